"""Log filters named in settings.LOGGING."""

import logging


class RefusalsInOneLine(logging.Filter):
    """A refused request (Django's 4xx: a body too large, too many fields, a broken multipart
    form, a bad host) is one line, without the traceback Django attaches: a fuzzer or a crawler
    must not fill the log with stack frames. Real errors (5xx) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        refused = record.name.startswith("django.security") or (
            record.name == "django.request" and isinstance(status, int) and status < 500
        )
        if refused and record.exc_info:
            kind = record.exc_info[0].__name__ if record.exc_info[0] else ""
            record.msg = f"{record.getMessage()} ({kind})" if kind else record.getMessage()
            record.args = None
            record.exc_info = record.exc_text = None
        return True
