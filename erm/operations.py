"""The GraphQL documents the client sends: one named operation per constant.

Names, arguments and types are exactly those of the ERM schema (``shared/erm-api.md``). Where the
evidence conflicts, each document is written to be valid under every reading: history's
``distributorId`` is declared ``ID!``, which fits a nullable argument as well as a required one.
Every value travels as a variable; nothing a person typed is ever spliced into a document.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Operation:
    """A named GraphQL document and the field its answer sits under."""

    name: str
    root_field: str
    document: str
    mutation: bool = False


_ITEM_FIELDS = """
  _id oemItemID oemID sellerItemID sellerID description
  itemFleet { _id fleetName }
  itemFirmware { _id codeSystem }
  assetAccount { _id credit { owner { _id name contact { phone } } } }
"""

_POLICY_FIELDS = """
  freeCodeCount resetCodeCount dayCodeCountLimit totalCodeCountLimit codeGenInterval
  maxCreditStackDays maxCreditStackCodeEvents daysToCheckDuration minimumDayCodesGenerated
  disableFreeCode disableResetCodeCount disableDayCodeCountLimit disableTotalCodeCountLimit
  disableCodeGenInterval disableMaxCreditStackDays disableMaxCreditStackCodeEvents
  disableDaysToCheckDuration disableMinimumDayCodesGenerated
"""

_ACCOUNT_FIELDS = f"""
  _id accountStage
  asset {{ {_ITEM_FIELDS} }}
  credit {{ accountStatus balance currency owner {{ _id name contact {{ phone }} }} }}
  paymentPlan {{ planName planDescription planDetails {{ pName pValue }} }}
  payHistory {{ amount datetime instruction }}
  paySchedule {{ amount datetime instruction }}
  user {{ _id name contact {{ phone }} }}
"""

_PAGE_INFO = "pageInfo { startCursor endCursor hasPreviousPage hasNextPage }"

SIGN_IN_CLIENT = Operation(
    "SignInClient",
    "signInClient",
    """
mutation SignInClient($signInCredentialsInput: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $signInCredentialsInput) { _id accessToken name email }
}""",
    mutation=True,
)


SIGN_IN_USER = Operation(
    "SignInUser",
    "signInUser",
    """
mutation SignInUser($signInCredentials: SignInCredentialsDto!) {
  signInUser(signInCredentials: $signInCredentials) { _id accessToken name email }
}""",
    mutation=True,
)


def _code_mutation(name: str, root_field: str, argument: str, input_type: str) -> Operation:
    document = f"""
mutation {name}(${argument}: {input_type}!) {{
  {root_field}({argument}: ${argument}) {{ codeType codeHex codeDec }}
}}"""
    return Operation(name, root_field, document, mutation=True)


GENERATE_DAYS_CODE = _code_mutation(
    "GenerateDaysCode", "generateDaysCode", "generateDaysCodeInput", "GenerateDaysCodeInput"
)
GENERATE_FREE_CODE = _code_mutation(
    "GenerateFreeCode", "generateFreeCode", "generateFreeCodeInput", "GenerateCodeInput"
)
GENERATE_RESET_CODE = _code_mutation(
    "GenerateResetCode", "generateResetCode", "generateResetCodeInput", "GenerateCodeInput"
)

CODE_HISTORY = Operation(
    "GetAllCodeEventsForSpecificItemByDistributor",
    "getAllCodeEventsForSpecificItemByDistributor",
    f"""
query GetAllCodeEventsForSpecificItemByDistributor(
  $itemId: ID!, $distributorId: ID!, $first: Int, $after: String
) {{
  getAllCodeEventsForSpecificItemByDistributor(
    itemId: $itemId, distributorId: $distributorId, first: $first, after: $after
  ) {{
    page {{
      edges {{ cursor node {{
        _id codeType codeDays codeDecString codeHexString createdAt description actorName
      }} }}
      {_PAGE_INFO}
    }}
    pageData {{ count limit offset }}
  }}
}}""",
)

ITEM_FLEETS = Operation(
    "GetItemFleetsForClient",
    "getItemFleetsForClient",
    f"""
query GetItemFleetsForClient($clientId: String!, $first: Int, $after: String, $search: String) {{
  getItemFleetsForClient(clientId: $clientId, first: $first, after: $after, search: $search) {{
    page {{
      edges {{ cursor node {{ _id fleetName description {_POLICY_FIELDS} }} }}
      {_PAGE_INFO}
    }}
    pageData {{ count limit offset }}
  }}
}}""",
)

FLEET = Operation(
    "GetSpecificItemFleet",
    "getSpecificItemFleet",
    f"""
query GetSpecificItemFleet($id: String!) {{
  getSpecificItemFleet(id: $id) {{
    _id fleetName description {_POLICY_FIELDS}
    itemList {{ _id oemItemID oemID sellerItemID description }}
  }}
}}""",
)

CLIENT_ITEMS = Operation(
    "GetAllClientItems",
    "getAllClientItems",
    f"""
query GetAllClientItems(
  $clientId: ID!, $first: Int, $after: String, $search: String, $searchByOemItemId: String,
  $assetaccount: Boolean!, $queryorder: QueryOrder!
) {{
  getAllClientItems(
    clientId: $clientId, first: $first, after: $after, search: $search,
    searchByOemItemId: $searchByOemItemId, assetaccount: $assetaccount,
    queryorder: $queryorder, pagination: CURSOR
  ) {{
    page {{ edges {{ cursor node {{ {_ITEM_FIELDS} }} }} {_PAGE_INFO} }}
    pageData {{ count limit offset }}
  }}
}}""",
)

ITEM = Operation(
    "GetSpecificItem",
    "getSpecificItem",
    f"""
query GetSpecificItem($itemId: ID!) {{
  getSpecificItem(itemId: $itemId) {{ {_ITEM_FIELDS} }}
}}""",
)

ASSET_ACCOUNTS = Operation(
    "GetAllAssetAccountsForClient",
    "getAllAssetAccountsForClient",
    f"""
query GetAllAssetAccountsForClient(
  $clientId: ID!, $first: Int, $after: String, $search: String
) {{
  getAllAssetAccountsForClient(
    clientId: $clientId, first: $first, after: $after, search: $search
  ) {{
    page {{ edges {{ cursor node {{ {_ACCOUNT_FIELDS} }} }} {_PAGE_INFO} }}
    pageData {{ count limit offset }}
  }}
}}""",
)

ASSET_ACCOUNT = Operation(
    "GetSpecificAssetAccount",
    "getSpecificAssetAccount",
    f"""
query GetSpecificAssetAccount($id: ID!) {{
  getSpecificAssetAccount(id: $id) {{ {_ACCOUNT_FIELDS} }}
}}""",
)

ALL = (
    SIGN_IN_CLIENT,
    SIGN_IN_USER,
    GENERATE_DAYS_CODE,
    GENERATE_FREE_CODE,
    GENERATE_RESET_CODE,
    CODE_HISTORY,
    ITEM_FLEETS,
    FLEET,
    CLIENT_ITEMS,
    ITEM,
    ASSET_ACCOUNTS,
    ASSET_ACCOUNT,
)
