"""Which progress messages of one job are worth relaying.

A sampler reports every step, as `progress` and `progress_state`, dozens of times a second on an
H100; each relayed message is an HTTP call's worth of work for the app and a websocket frame for
the browser, which can show at most a few per second anyway. Pure: the clock is injected.
"""
import time

KINDS = frozenset({"progress", "progress_state"})


class ProgressThrottle:
    """At most one message of each kind every `interval` seconds, per job. Never lost:

    - a message reaching its maximum (value == max), or a progress_state in which some node
      changed state (started, finished), goes at once;
    - a message held back is the newest of its kind; it goes out when its time comes (`due`),
      when the next node's progress arrives (it was the last one of its node), or when the
      caller `drain`s before a message that must come after it (executing, executed, the end).
    """

    def __init__(self, interval: float = 0.25, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last_sent: dict[str, float] = {}
        self.held: dict[str, dict] = {}
        self.states: dict = {}  # progress_state: node -> state, as last relayed

    def offer(self, message: dict) -> list[dict]:
        """The messages to relay now, in order (maybe none: then `message` is held back)."""
        kind = message.get("type")
        if kind not in KINDS:
            return [message]
        out = []
        held = self.held.get(kind)
        if held is not None and _nodes(held) != _nodes(message):
            out.append(self.held.pop(kind))  # the last one of the previous node
        if self._important(kind, message) or self.clock() - self.last_sent.get(kind, float("-inf")) >= self.interval:
            self.held.pop(kind, None)  # superseded by this newer one
            out.append(self._sent(kind, message))
        else:
            self.held[kind] = message
        return out

    def allow(self, message: dict) -> bool:
        """Whether `message` would go out now (without holding it back when not)."""
        kind = message.get("type")
        if kind not in KINDS:
            return True
        if self._important(kind, message) or self.clock() - self.last_sent.get(kind, float("-inf")) >= self.interval:
            self._sent(kind, message)
            return True
        return False

    def due(self) -> list[dict]:
        """Held messages whose interval has passed (call this while nothing else arrives)."""
        now = self.clock()
        ready = [k for k in self.held if now - self.last_sent.get(k, float("-inf")) >= self.interval]
        return [self._sent(k, self.held.pop(k)) for k in ready]

    def drain(self) -> list[dict]:
        """Everything held, now."""
        out = [self._sent(k, m) for k, m in self.held.items()]
        self.held.clear()
        return out

    def _sent(self, kind: str, message: dict) -> dict:
        self.last_sent[kind] = self.clock()
        if kind == "progress_state":
            self.states = _states(message)
        return message

    def _important(self, kind: str, message: dict) -> bool:
        data = message.get("data") or {}
        if kind == "progress":
            return _full(data)
        running = [n for n in (data.get("nodes") or {}).values() if isinstance(n, dict) and n.get("state") == "running"]
        # Finished nodes stay in every later progress_state at value == max: only running ones count.
        return _states(message) != self.states or any(_full(n) for n in running)


def _full(data: dict) -> bool:
    value, maximum = data.get("value"), data.get("max")
    try:
        return value is not None and maximum is not None and float(value) >= float(maximum)
    except (TypeError, ValueError):
        return False


def _states(message: dict) -> dict:
    nodes = (message.get("data") or {}).get("nodes") or {}
    return {n: v.get("state") for n, v in nodes.items() if isinstance(v, dict)}


def _nodes(message: dict):
    """Which node a progress message is about (progress_state: the ones running)."""
    data = message.get("data") or {}
    if message.get("type") == "progress":
        return data.get("node")
    nodes = data.get("nodes") or {}
    return frozenset(n for n, v in nodes.items() if isinstance(v, dict) and v.get("state") == "running")
