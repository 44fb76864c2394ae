"""Who reaped which process: the reaper part of the CPU accounting rule.

A process's children time (cutime+cstime) grows by the whole total of each child it
reaps.  The sampler credits a live process with that growth *minus* the totals of
the processes it reaped that were already credited (to their own groups, while they
were seen); the whole rule is in :mod:`resmon.collect.sampler`.  :class:`ReapLedger`
says, each sample, how many ticks each live process reaped of processes seen before.

The readings of one sample are not one instant: ``/proc/PID/stat`` files are read one
after the other, and a parent may reap a child between the two reads.  Then:

- the parent read *before* the reap, the child gone when its turn came: the parent's
  growth shows only at the next sample, when the child is no longer "just gone";
- the child read *before* the reap (alive or a zombie), the parent after it: the
  parent's growth is there while the child is still in this sample's readings, and
  at the next sample the child disappears with no growth left to match it.

Matched only within one interval, each ordering counted the child's last seen total
twice (one jump of up to a child's whole total at a reap, seen at ``--interval
100ms``).  So the ledger keeps a disappeared process that no growth matched *pending*
for a few samples, with the ancestors it had, and matches it against a later
growth; and a child still in the readings, read before its parent and gone by the
end of the sample, is matched against its parent's growth at once and remembered as
matched, so its disappearance later takes nothing more.
"""

from __future__ import annotations

from resmon import procfs
from resmon.collect.sample_state import EXCLUDED, Key, ProcessState, SampleWork

# Longest parent chain followed: a loop in stale parent links cannot hang a sample.
MAX_PARENT_WALK = 256

# How many samples a disappeared process no growth matched stays pending.  The reap of
# a child whose stat was unreadable happened before that read, so its parent's growth
# is in the parent's very next reading: one sample is enough; a few more cover a parent
# that was itself reaped meanwhile (its reaper's growth then carries the child).  A
# process whose parent ignores SIGCHLD (auto-reaped: no growth ever comes) is the one
# pending for nothing; the few samples bound what it could match by mistake.
PENDING_SAMPLES = 3

# At most this many processes still in the readings are read again in one sample to see
# whether they are gone (a child read before its parent, after a PID wrap, say): a bound
# on the cost when a parent of many children reaped some never seen.
MAX_PRESENT_CHECKS = 32

# /proc/PID/stat states of a process that has exited (zombie, dead): likeliest reaped.
_DEAD_STATES = frozenset({"Z", "X", "x"})


class _Pending:
    __slots__ = ("ancestors", "fresh", "left", "ticks")

    def __init__(self, ticks: int, ancestors: tuple[Key, ...]) -> None:
        self.ticks = ticks  # its last observed total not yet matched
        self.ancestors = ancestors  # parent first, as last seen
        self.left = PENDING_SAMPLES
        # It went at this look: its reap may have come after its reaper was read.
        self.fresh = True


# A process that went: its key and its ancestors as last seen, parent first.
_Went = tuple[Key, tuple[Key, ...]]
# A process a reaper may have reaped: (doubt, hops, -ticks, key, reapers, present).  doubt
# 0: reaped before its reaper's read for sure; 1: maybe only after (seen next time).
_Claim = tuple[int, int, int, Key, list[Key], bool]


class ReapLedger:
    """The reaped processes not matched to a reaper yet, across samples."""

    def __init__(self, proc_path: str = "/proc") -> None:
        self.proc_path = proc_path
        self._pending: dict[Key, _Pending] = {}
        # Processes still in the readings whose total (this many ticks of it) a parent's
        # growth already matched: what their disappearance takes is only the rest.
        self._matched: dict[Key, int] = {}
        # The processes that went at the last look, by pid: a child read just before its
        # parent exited still names that parent, and is orphaned to the parent's reaper.
        self._went: dict[int, _Went] = {}

    def take_back(self, prev: dict[Key, ProcessState], work: SampleWork) -> None:
        """Take from each reaper's group (``work.group_credit``) the totals of the
        processes it reaped that were already credited."""
        if not prev or not (work.churn or work.grown or self._pending):
            return
        current, group_credit = work.current, work.group_credit
        absorbed = self.absorbed(prev, current, work.grown, work.churn, work.listing)
        for key, ticks in absorbed.items():
            group = current[key].group
            if group != EXCLUDED:
                # Never below zero: a reaper absorbs at most its children's growth,
                # which its group was just credited.
                group_credit[group] -= ticks

    def absorbed(
        self,
        prev: dict[Key, ProcessState],
        current: dict[Key, ProcessState],
        grown: dict[Key, int],
        churn: bool = True,
        listing: list[str] | None = None,
    ) -> dict[Key, int]:
        """Ticks of processes seen before that each live process reaped this interval.

        ``grown`` is each live process whose cutime+cstime grew in the interval, by how
        much (its *capacity*; a process born in the interval: all of it); ``churn``
        whether processes came or went (none disappeared without it); ``listing`` the
        order the stat files were read in (the procfs root's entries).

        A disappeared process whose last known parent is alive was reaped by it, if
        that parent's growth covers its last observed total (not, say, when the parent
        ignores SIGCHLD: nothing is taken).  If the parent is gone too, the child was
        reaped either by that parent before it died (so by the parent's reaper, in
        turn) or, orphaned, by a subreaper or init: both are live ancestors, so the
        nearest live ancestor whose growth covers it takes it.  Those surely reaped
        before their reaper's read are placed first, then direct children, then
        larger totals; what is not placed stays pending.
        """
        went = self._add_gone(prev, current) if churn else {}
        absorbed: dict[Key, int] = {}
        if not self._pending and not grown:
            return absorbed
        position = _Positions(listing)
        claims = self._pending_claims(current, grown, position)
        capacity = dict(grown)
        self._place([c for c in claims if c[0] == 0], capacity, absorbed)
        doubtful = [c for c in claims if c[0] != 0]
        # Growth left unexplained: children reaped between their read and their reaper's
        # (else children never seen, born and reaped between two samples).
        if listing is not None and any(capacity.values()):
            doubtful += self._present_claims(current, capacity, went, position)
        self._place(doubtful, capacity, absorbed)
        for key, entry in list(self._pending.items()):
            entry.fresh = False
            entry.left -= 1
            if entry.left <= 0:
                del self._pending[key]
        return absorbed

    def _place(
        self, claims: list[_Claim], capacity: dict[Key, int], absorbed: dict[Key, int]
    ) -> None:
        """Each claim to the first of its reapers whose growth left covers it."""
        claims.sort(key=lambda claim: claim[:3])
        pending, matched = self._pending, self._matched
        for _doubt, _hops, minus_ticks, key, reapers, present in claims:
            ticks = -minus_ticks
            for reaper in reapers:
                if capacity.get(reaper, 0) >= ticks:
                    capacity[reaper] -= ticks
                    absorbed[reaper] = absorbed.get(reaper, 0) + ticks
                    if present:
                        matched[key] = matched.get(key, 0) + ticks
                    else:
                        del pending[key]
                    break

    def _add_gone(
        self, prev: dict[Key, ProcessState], current: dict[Key, ProcessState]
    ) -> dict[int, _Went]:
        """The processes that disappeared since the previous reading join the pending."""
        gone_keys = prev.keys() - current.keys()
        if not gone_keys:
            return {}
        matched, pending, earlier = self._matched, self._pending, self._went
        prev_by_pid = {k[0]: k for k in prev}
        went: dict[int, _Went] = {}
        for key in gone_keys:
            gone = prev[key]
            ancestors = _ancestors(gone, key, prev, prev_by_pid, earlier)
            went[key[0]] = (key, ancestors)
            ticks = gone.total - matched.pop(key, 0)
            if ticks > 0 and ancestors:
                pending[key] = _Pending(ticks, ancestors)
        self._went = went
        return went

    def _pending_claims(
        self, current: dict[Key, ProcessState], grown: dict[Key, int], position: _Positions
    ) -> list[_Claim]:
        claims: list[_Claim] = []
        pending = self._pending
        for key, entry in list(pending.items()):
            ancestors = entry.ancestors
            hops, reapers = _candidates(ancestors, current)
            if (
                entry.fresh
                and hops == 0
                and grown.get(ancestors[0], 0) < entry.ticks
                and not self._still_there(ancestors[0])
            ):
                # Its parent was read, then went too (an exit cascade): it was orphaned.
                hops, reapers = 1, [a for a in ancestors[1:] if a in current]
            if not reapers:
                del pending[key]  # none of its ancestors is alive: nobody can take it now
                continue
            # Gone when its turn to be read came after its reaper's read: reaped before
            # that read, or between the two.
            doubt = int(entry.fresh and position.before(reapers[0], key))
            claims.append((doubt, hops, -entry.ticks, key, reapers, False))
        return claims

    def _present_claims(
        self,
        current: dict[Key, ProcessState],
        capacity: dict[Key, int],
        went: dict[int, _Went],
        position: _Positions,
    ) -> list[_Claim]:
        """Processes still in the readings that may have been reaped between their read
        and their reaper's: the reaper is their parent, or, if the parent went this
        interval (or is such a process itself), a live ancestor of it (the child was
        orphaned).  Read after its reaper, a process was not reaped before that read (its
        stat was still there); read before, it is a claim only if it is gone by now:
        one read of its stat, for at most MAX_PRESENT_CHECKS processes a sample, zombies
        first."""
        left = {key: ticks for key, ticks in capacity.items() if ticks > 0}
        parents = {key[0]: key for key in left}
        index = position.index()
        parent_at = {pid: index.get(str(pid), -1) for pid in parents}
        # Most processes are none of these: one pass that keeps only the children.
        children = [
            (key, state)
            for key, state in current.items()
            if state.ppid in parents or state.ppid in went
        ]
        dead = [item for item in children if item[1].stat.state in _DEAD_STATES]
        if dead:  # zombies first: the likeliest reaped
            children = dead + [item for item in children if item[1].stat.state not in _DEAD_STATES]
        claims: list[_Claim] = []
        checks = [MAX_PRESENT_CHECKS]
        matched = self._matched
        # The claimed ones, by pid: their children were orphaned to the same reapers.
        gone_now: dict[int, tuple[int, list[Key]]] = {}
        for key, state in children:
            ppid = state.ppid
            if ppid in parents and key[0] != ppid:
                # The common case, checked here without a call: read after its parent.
                if index.get(str(key[0]), -1) >= parent_at[ppid]:
                    continue
                parent = parents[ppid]
                if not 0 < state.total - matched.get(key, 0) <= left[parent]:
                    continue
                hops, reapers = 0, [parent]
            elif ppid in went:
                parent, ancestors = went[ppid]
                hops, reapers = _candidates((parent, *ancestors), current)
                reapers = [r for r in reapers if r in left]
            else:
                continue
            if self._claim_present(key, state, hops, reapers, left, position, claims, checks):
                gone_now[key[0]] = (hops + 1, reapers)
        if gone_now:
            for key, state in current.items():
                if state.ppid in gone_now and key[0] not in gone_now:
                    hops, reapers = gone_now[state.ppid]
                    self._claim_present(key, state, hops, reapers, left, position, claims, checks)
        return claims

    def _claim_present(
        self,
        key: Key,
        state: ProcessState,
        hops: int,
        reapers: list[Key],
        left: dict[Key, int],
        position: _Positions,
        claims: list[_Claim],
        checks: list[int],
    ) -> bool:
        ticks = state.total - self._matched.get(key, 0)
        if ticks <= 0 or checks[0] <= 0:
            return False
        reapers = [r for r in reapers if left[r] >= ticks and position.before(key, r)]
        if not reapers:
            return False
        checks[0] -= 1
        if self._still_there(key):
            return False
        claims.append((1, hops, -ticks, key, reapers, True))
        return True

    def _still_there(self, key: Key) -> bool:
        try:
            data = procfs.read_bytes(f"{self.proc_path}/{key[0]}/stat")
        except OSError:
            return False
        if not data:
            return False
        try:
            return procfs.parse_stat(data).starttime == key[1]
        except (ValueError, IndexError):
            return False


class _Positions:
    """Where each process's stat file came in the order of one sample's reads."""

    def __init__(self, listing: list[str] | None) -> None:
        self._listing = listing
        self._index: dict[str, int] | None = None

    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self._listing or ())}
        return self._index

    def before(self, first: Key, second: Key) -> bool:
        """Whether ``first`` was read (or its read tried) before ``second``; one not
        listed at all was gone before the reads began."""
        index = self.index()
        a, b = index.get(str(first[0])), index.get(str(second[0]))
        if b is None:
            return False
        return a is None or a < b


def _ancestors(
    gone: ProcessState,
    key: Key,
    prev: dict[Key, ProcessState],
    prev_by_pid: dict[int, Key],
    earlier: dict[int, _Went],
) -> tuple[Key, ...]:
    """The parent chain of a process as last seen, parent first; through a parent that
    went at the previous look (the process was read before its parent exited)."""
    chain: list[Key] = []
    node = gone
    for _ in range(MAX_PARENT_WALK):
        parent = prev_by_pid.get(node.ppid)
        if parent is None:
            went = earlier.get(node.ppid)
            if went is not None and went[0] != key:
                chain.append(went[0])
                chain.extend(a for a in went[1] if a != key)
            break
        if parent == key or parent in chain:
            break
        chain.append(parent)
        node = prev[parent]
    return tuple(chain)


def _candidates(
    ancestors: tuple[Key, ...], current: dict[Key, ProcessState]
) -> tuple[int, list[Key]]:
    """Who may have reaped a process: its parent if alive (no one else), else every live
    ancestor, nearest first; and how many ancestors were gone before the first live one."""
    for hops, ancestor in enumerate(ancestors):
        if ancestor in current:
            if hops == 0:
                return 0, [ancestor]
            return hops, [a for a in ancestors[hops:] if a in current]
    return len(ancestors), []
