"""Which progress messages are worth relaying: a sampler can emit dozens per second."""
import time


class ProgressThrottle:
    """At most one progress message per node every `interval` seconds; the last step always."""

    KINDS = {"progress", "progress_state"}

    def __init__(self, interval: float = 0.25, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last_sent: dict[tuple, float] = {}

    def allow(self, message: dict) -> bool:
        kind = message.get("type")
        if kind not in self.KINDS:
            return True
        data = message.get("data") or {}
        if kind == "progress" and data.get("value") == data.get("max"):
            return True
        key = (kind, data.get("node"))
        now = self.clock()
        if now - self.last_sent.get(key, float("-inf")) >= self.interval:
            self.last_sent[key] = now
            return True
        return False
