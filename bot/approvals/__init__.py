"""Approval requests: a code that needs a second person's yes, decided in a team channel.

A distributor's policy (stored per distributor, :class:`Policy`) says which code requests need
approval: by default free and reset codes, days codes over 30 days, and days codes from someone who
issued 10 codes in the last 24 hours; supervisors and admins issue directly unless the policy says
otherwise, and a request over a quota goes to approval instead of being refused.

The flow, every step in the database first (a restart, even ``kill -9``, loses nothing):

1. :meth:`ApprovalService.gate` (called by the code commands once the item is resolved) stores the
   request (:class:`ApprovalStore.create`: who, what, the exact command text and a fingerprint of
   exactly these values; one pending request per ask, held by a unique index), posts a card to
   every approval channel of the distributor (one per platform, set with ``/approvals here``) and
   tells the requester privately that it is pending. The rules count what the same person got or
   waits for (:meth:`ApprovalStore.usage`): splitting a request or adding ``--again`` adds up.
2. A supervisor presses Approve or Deny (stored buttons, actions ``approve`` / ``deny``) or types
   ``/approvals approve ID``. The decision is a compare-and-set on the row (``UPDATE ... WHERE
   status = 'pending'``): the first decision wins across processes and platforms, everyone later
   is told who decided when. Approvers need supervisor or above at the distributor and must not be
   the requester.
3. On approve the stored request runs once through the dispatcher (request key
   ``approval:<id>``; ``Request.approval_id`` skips the policy and quotas, and the code command
   checks that what runs is exactly what was approved); the code goes to the requester privately,
   never to a channel. Every card of the request is then edited to show the decision, with no
   buttons left.
4. :meth:`ApprovalService.sweep`, run every minute by the server (first at start), expires
   requests (default 24 hours), reminds approvers at half time, posts cards that could not be
   posted before (with backoff, :mod:`bot.approvals.delivery`), finishes cards another process
   could not edit, and finishes approved requests whose process died (:meth:`recover`).

A request id tells nothing to someone without a role at its distributor (the answer is the one an
unknown id gets). Cards and messages name people by platform id (:mod:`bot.approvals.cards`).

The package: :mod:`.service` (asking and deciding), :mod:`.runs` (running approved requests,
the sweep), :mod:`.delivery` (cards and private messages through each platform's
:class:`bot.ports.Notifier`), :mod:`.cards` (pure rendering), :mod:`.policy` (settings as typed),
:mod:`.actions` (the Approve and Deny buttons). Every step is written to the audit log with the
request's id. The tables and their compare-and-set updates are in :mod:`bot.storage.approvals`.
"""
