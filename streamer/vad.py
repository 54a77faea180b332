"""Silero VAD v6 in streaming mode: the ONNX file that ships inside faster-whisper, fed 32 ms at a time.

faster-whisper runs this model over a whole file at once (`faster_whisper.vad.SileroVADModel`).
The model is a recurrent network whose LSTM state (h, c) and 64-sample context carry from one
512-sample chunk to the next, and a batch of chunks is processed in order as one sequence, so
keeping (h, c, context) between calls gives exactly the whole-file probabilities while each new
chunk costs one small inference (about 50 us; a one-second block of 31 chunks is one call).

Digital silence (every sample of a chunk within SILENCE_FLOOR of zero: a muted microphone,
padding, a paused file) skips the network: its probability is 0 and the state goes back to the
start-of-stream state the model was trained from. An hour of zeros then costs a few hundred ms
instead of several seconds, and a noise floor of real microphones (about -90 dBFS and up) is far
above the gate, so no real audio is skipped.
"""
from __future__ import annotations

import os

import numpy as np

CHUNK = 512  # samples per VAD step at 16 kHz (32 ms), fixed by the model
CONTEXT = 64  # samples of the previous chunk the model sees in front of each chunk
SILENCE_FLOOR = 10 ** (-100 / 20)  # peak amplitude treated as digital silence (-100 dBFS)


def model_path() -> str:
    from faster_whisper.utils import get_assets_path

    return os.path.join(get_assets_path(), "silero_vad_v6.onnx")


class SileroVad:
    """Speech probabilities for consecutive 512-sample chunks of one 16 kHz stream."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: the model is tiny, and the streamer shares the CPU with Whisper.
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(model_path(), providers=["CPUExecutionProvider"], sess_options=options)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next chunk is treated as the start of a new one."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        """Probabilities (n,) for `chunks` of shape (n, 512), continuing from the previous call."""
        chunks = np.asarray(chunks, dtype=np.float32)
        if chunks.ndim != 2 or chunks.shape[1] != CHUNK:
            raise ValueError(f"SileroVad wants chunks of shape (n, {CHUNK}), got {chunks.shape}")
        probs = np.zeros(len(chunks), dtype=np.float32)
        silent = np.abs(chunks).max(axis=1, initial=0.0) <= SILENCE_FLOOR
        start = 0
        # Run the network over each stretch of non-silent chunks; silent ones reset the stream.
        for begin, end in _runs(~silent):
            if begin > start:
                self.reset()
            probs[begin:end] = self._infer(chunks[begin:end])
            start = end
        if len(chunks) and silent[-1]:
            self.reset()
        return probs

    def _infer(self, chunks: np.ndarray) -> np.ndarray:
        previous = np.concatenate([self._context[None, :], chunks[:-1, -CONTEXT:]])
        batch = np.concatenate([previous, chunks], axis=1)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = chunks[-1, -CONTEXT:].copy()
        return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[begin, end) index ranges where `mask` is True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
