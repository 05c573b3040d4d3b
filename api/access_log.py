"""One line per HTTP request, at INFO on the ``aiohttp.access`` logger.

Probes that succeed (``/health``, ``/ready``, ``/metrics`` answered below 400) are left out:
an orchestrator asks them every few seconds and they would bury the requests that matter.
``BATCHLINE_LOG_LEVEL=warning`` turns the access log off.
"""

from __future__ import annotations

from aiohttp import web_log
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

# Client, request line, status, response bytes, seconds taken.
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'

_PROBES = frozenset({"/health", "/ready", "/metrics"})


class AccessLogger(web_log.AccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.path in _PROBES and response.status < 400:
            return
        super().log(request, response, time)
