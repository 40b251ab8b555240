"""Which progress messages are worth relaying: a sampler can emit dozens per second."""

import time


class ProgressThrottle:
    """At most one `progress` per node, and one `progress_state`, every `interval` seconds.

    What matters always goes out: the last step of a node, and any `progress_state` in which a
    node changed state (ComfyUI's `nodes` map: pending, running, finished), above all the final
    "all finished" one that makes the UI stop marking a node as running. A message held back is
    kept as the newest of its kind, and `held()` hands it over before the run's end.
    """

    KINDS = {"progress", "progress_state"}

    def __init__(self, interval: float = 0.25, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last_sent: dict[tuple, float] = {}
        self.last_states: dict | None = None
        self._held: dict[tuple, dict] = {}

    @staticmethod
    def _states(data: dict):
        nodes = data.get("nodes")
        if not isinstance(nodes, dict):
            return None
        return {k: v.get("state") if isinstance(v, dict) else v for k, v in nodes.items()}

    def _key(self, kind: str, data: dict) -> tuple:
        return (kind, data.get("node") if kind == "progress" else None)

    def allow(self, message: dict) -> bool:
        kind = message.get("type")
        if kind not in self.KINDS:
            return True
        data = message.get("data") or {}
        key = self._key(kind, data)
        important = False
        if kind == "progress":
            important = data.get("value") == data.get("max")
        else:
            states = self._states(data)
            important = states != self.last_states
            self.last_states = states
        now = self.clock()
        if important or now - self.last_sent.get(key, float("-inf")) >= self.interval:
            self.last_sent[key] = now
            self._held.pop(key, None)
            return True
        self._held[key] = message
        return False

    def held(self) -> list[dict]:
        """The newest held-back message of each kind (sent before the run's end messages)."""
        messages, self._held = list(self._held.values()), {}
        return messages
