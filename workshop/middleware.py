"""Site-wide HTTP policies that are not any one app's business."""
from django.conf import settings
from django.utils.csp import CSP


def rq_dashboard_csp(get_response):
    """django-rq's dashboard pages carry inline scripts: they alone may run inline code (staff
    only, and nothing from a workspace is ever shown there)."""
    relaxed = {**settings.SECURE_CSP, "script-src": [CSP.SELF, CSP.UNSAFE_INLINE]}

    def middleware(request):
        response = get_response(request)
        if request.path.startswith("/admin/rq/"):
            response._csp_config = relaxed
        return response

    return middleware
