"""WhatsApp: one-to-one chats with a business number on the WhatsApp Business Cloud API (pywa).

Importing the package stays cheap (pywa loads when the adapter is built): see
:mod:`adapters.platform`. The adapter itself is :class:`adapters.whatsapp.app.WhatsAppAdapter`.
"""

from adapters.whatsapp.platform import PLATFORM

__all__ = ["PLATFORM"]
