"""The execution engine: pure Python, no Django imports.

It receives a definition, the run input and a CredentialResolver, runs the nodes and returns a RunResult in
which every secret it resolved is masked. See `executor.execute`; a definition's shape is checked by
`definition.check_definition`, node types live in `nodes/`, origins in `origins.py`.
"""

from .definition import check_definition, check_run_input
from .errors import NodeError, RunCanceled, TemplateLimitError
from .executor import execute
from .http_merge import PreparedRequest, prepare_http_request
from .masking import Masker
from .netguard import BlockedAddressError, check_url_target, is_forbidden_ip, make_http_client
from .refs import collect_references
from .templating import render
from .types import (
    CredentialResolver,
    NodeResult,
    Resolution,
    ResolvedConnection,
    RunContext,
    RunOptions,
    RunResult,
    TemplateLimits,
)

__all__ = [
    "BlockedAddressError",
    "CredentialResolver",
    "Masker",
    "NodeError",
    "NodeResult",
    "PreparedRequest",
    "Resolution",
    "ResolvedConnection",
    "RunCanceled",
    "RunContext",
    "RunOptions",
    "RunResult",
    "TemplateLimitError",
    "TemplateLimits",
    "check_definition",
    "check_run_input",
    "check_url_target",
    "collect_references",
    "execute",
    "is_forbidden_ip",
    "make_http_client",
    "prepare_http_request",
    "render",
]
