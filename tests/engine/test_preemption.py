"""The preemption flag: a signal sets it, the previous handlers come back, a second signal acts as before."""

import os
import signal

import pytest

from video_sparse.engine.preemption import PREEMPTED_EXIT_CODE, PreemptionFlag


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_sets_the_flag_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    flag = PreemptionFlag()
    with flag.watch():
        assert not flag.agreed()
        os.kill(os.getpid(), sig)
        assert flag.received == sig and flag.agreed()
    assert signal.getsignal(sig) == before


def test_second_signal_reaches_the_previous_handler():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        flag = PreemptionFlag()
        with flag.watch():
            os.kill(os.getpid(), signal.SIGUSR1)
            assert seen == []  # the first one only sets the flag
            os.kill(os.getpid(), signal.SIGUSR1)
            assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_exit_code_is_distinct():
    assert PREEMPTED_EXIT_CODE not in (0, 1, 2, 124) and PREEMPTED_EXIT_CODE < 128
