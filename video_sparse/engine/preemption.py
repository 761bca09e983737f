"""Preemption: a signal asks the training to save a step checkpoint at the next step boundary and stop.

SLURM (``#SBATCH --signal=USR1@120``, ``scancel --signal=USR1``), spot instances and schedulers send
SIGTERM or SIGUSR1 some time before they kill a job. While :meth:`PreemptionFlag.watch` is active the
signal only sets a flag; the training loop asks :meth:`PreemptionFlag.agreed` at every optimizer-step
boundary, which all ranks answer together (a sum over the process group, so a signal that reached one
rank stops every rank at the same step), saves the step checkpoint every rank takes part in, and the
tool exits with :data:`PREEMPTED_EXIT_CODE`. The same command (``resume=auto``) continues from there,
exactly as from any mid-epoch checkpoint.

A second signal while the flag is set restores the previous handler and delivers the signal again
(so a second ``scancel`` or Ctrl-C still ends a run that is stuck).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import torch

from .distributed import all_reduce_sum

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 75
"""Exit status of a training stopped by a preemption signal after its checkpoint was saved
(``EX_TEMPFAIL`` of ``sysexits.h``: try again; distinct from 0, 1 (error), 2 (usage), 124 (timeout),
128 + N (killed by signal N))."""

PREEMPTION_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
)


class PreemptionFlag:
    """A flag set by a signal, read at step boundaries and agreed on by every rank.

    Args:
        signals: the signals that request a save-and-stop (SIGTERM and SIGUSR1 by default).
    """

    def __init__(self, signals: Sequence[signal.Signals] = PREEMPTION_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.received is not None:  # a second signal: the old behaviour (usually: terminate)
            signal.signal(sig, self._previous.get(sig, signal.SIG_DFL))
            os.kill(os.getpid(), sig)
            return
        self.received = sig
        log.warning("received %s: saving a checkpoint at the next step boundary, then stopping", sig.name)

    @contextmanager
    def watch(self) -> Iterator[PreemptionFlag]:
        """Handle the signals inside the ``with`` block; the previous handlers are restored after it.

        Outside the main thread (where Python cannot install handlers) nothing is installed.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            self._previous = {}

    def agreed(self, device: torch.device | None = None) -> bool:
        """Whether any rank received a signal; a collective, so every rank must call it at the same step.

        Args:
            device: the device of the process group's tensors (a CUDA device under NCCL, else None).
        """
        return all_reduce_sum(1.0 if self.received is not None else 0.0, device) > 0
