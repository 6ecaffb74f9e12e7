"""The meeting point of worker threads that share one time loop (blas.py splits a loop over hidden
units): every thread writes its slice of h_t, then waits here until all have, because step t+1
reads the whole of h_t.

A barrier is one int64 array of BARRIER_WORDS (two cache lines, so two barriers never share one):
word 0 counts the threads that have arrived, word 1 is the generation, bumped by the last to
arrive, which is what the others watch. Each thread reads the generation before it announces
itself, so it cannot miss the bump. The words are read and written with atomic instructions
(LLVM IR through numba.extending.intrinsic: Numba has no atomics of its own on the CPU), which
also order each thread's plain writes of h_t before its arrival and the others' reads after it.

Waiting spins with the CPU's pause hint for a few microseconds, the time a step's work differs
between threads, then yields the core at every look (sched_yield), so a thread whose partner
was descheduled does not hold a core that the partner needs.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

BARRIER_WORDS = 16  # int64 words per barrier: 128 bytes, two cache lines
SPINS_BEFORE_YIELD = 4000


def _word_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return builder.gep(ary.data, [index])


@intrinsic
def _fetch_add(typingctx, words, index, value):
    """words[index] += value atomically; returns the value before."""
    sig = types.int64(words, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def _load(typingctx, words, index):
    """words[index], read atomically."""
    sig = types.int64(words, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _word_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return sig, codegen


@intrinsic
def _relax(typingctx, spins):
    """Pause the core briefly (x86 `pause`; nothing elsewhere) below SPINS_BEFORE_YIELD spins,
    give it up (sched_yield) above."""
    sig = types.void(types.intp)

    def codegen(context, builder, signature, args):
        module = builder.module
        void_fn = ir.FunctionType(ir.VoidType(), [])
        sched_yield = cgutils.get_or_insert_function(module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        few = builder.icmp_signed("<", args[0], ir.Constant(args[0].type, SPINS_BEFORE_YIELD))
        with builder.if_else(few) as (then, otherwise):
            with then:
                if "x86" in module.triple or "i686" in module.triple:
                    builder.call(cgutils.get_or_insert_function(module, void_fn, "llvm.x86.sse2.pause"), [])
            with otherwise:
                builder.call(sched_yield, [])
        return context.get_dummy_value()

    return sig, codegen


def wait(barrier, parties):
    """Return once `parties` threads have called wait on this barrier (int64, BARRIER_WORDS,
    zeros before first use; reusable at once). parties = 1 returns at once.

    This body runs under NUMBA_DISABLE_JIT=1, where there is only ever one party."""
    if parties > 1:
        raise RuntimeError("threads meet in compiled kernels only")


@overload(wait, jit_options={"cache": True, "nogil": True})
def _wait_compiled(barrier, parties):
    def impl(barrier, parties):
        if parties <= 1:
            return
        generation = _load(barrier, 1)
        if _fetch_add(barrier, 0, 1) + 1 == parties:  # the last to arrive opens the next round
            _fetch_add(barrier, 0, -parties)
            _fetch_add(barrier, 1, 1)
            return
        spins = 0
        while _load(barrier, 1) == generation:
            _relax(spins)
            spins += 1
    return impl


@njit(cache=True, nogil=True)
def active_rows(ends, t, lo, hi):
    """The end of the rows of share lo:hi that step t computes: min(hi, ends[t]), at least lo.
    A batch of texts sorted longest first is active on a prefix of its rows at every step, so
    a forward pass can stop each text at its length (ends[t] = how many are longer than t); a
    language model's batch has ends[t] = B throughout."""
    return max(lo, min(hi, ends[t]))


# ---------------------------------------------------------------- the worker threads' signals
# engine/threads.py's helper threads wait for work, and its caller for their results, on int64
# words read and written with the atomics above, from Python through these nogil kernels: a wait
# in compiled code holds no GIL, so the threads it waits for can take it.


@intrinsic
def _cycles(typingctx):
    """The CPU's time-stamp counter (x86: constant rate, wall time); 0 where LLVM has none."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        counter = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                 "llvm.readcyclecounter")
        return builder.call(counter, [])

    return sig, codegen


@njit(cache=True, nogil=True)
def await_change(words, index, seen, cycles, looks):
    """words[index] once it differs from `seen`, or `seen` once `cycles` of the time-stamp
    counter have passed or after `looks` looks (pausing, then yielding the core, between them).
    Time, not looks alone, bounds the wait: beside a busy process each yield can last a
    scheduler slice."""
    start = _cycles()
    for spin in range(looks):
        now = _load(words, index)
        if now != seen:
            return now
        _relax(spin)
        if spin % 64 == 63 and _cycles() - start > cycles:
            break
    return _load(words, index)


@njit(cache=True, nogil=True)
def await_at_least(words, index, target):
    """Return once words[index] >= target (pausing, then yielding the core, between looks)."""
    spin = 0
    while _load(words, index) < target:
        _relax(spin)
        spin += 1


@njit(cache=True, nogil=True)
def add(words, index, value):
    """words[index] += value, atomically; returns the new value."""
    return _fetch_add(words, index, value) + value
