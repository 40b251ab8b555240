"""Site-wide HTTP policies that are not any one app's business."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404
from django.utils.csp import CSP
from rq.exceptions import NoSuchJobError

from .metrics import count_refusal


class RQDashboard:
    """django-rq's dashboard: its pages carry inline scripts, so they alone may run inline code
    (staff only, and nothing from a workspace is shown there); and a job or worker that is not
    in Redis (any more) is a 404, where django-rq's views raise."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.relaxed = {**settings.SECURE_CSP, "script-src": [CSP.SELF, CSP.UNSAFE_INLINE]}

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/admin/rq/"):
            response._csp_config = self.relaxed
        return response

    def process_exception(self, request, exception):

        # ImproperlyConfigured: a page of a part the workshop does not install (rq-scheduler).
        missing = (NoSuchJobError, ValueError, ImproperlyConfigured)
        if request.path.startswith("/admin/rq/") and isinstance(exception, missing):
            raise Http404(f"Not in Redis: {exception}") from exception


class CountRefusals:
    """Every refused request (4xx but 404) counts in /metrics, by reason, for all processes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if 400 <= response.status_code < 500 and response.status_code != 404:
            count_refusal(response.status_code)
        return response
