"""List the microphones PortAudio sees, so `--device NAME|INDEX` can name one.

sounddevice raises OSError at import when the PortAudio library is missing, and a server or
container often has PortAudio but no input device at all. Both are ordinary situations for this
program (it can listen to files or to the browser instead), so both become a `MicUnavailable`
that says what to do, never a traceback.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from types import ModuleType

from core.errors import UserError

ALTERNATIVES = ("use --source file:PATH to analyse a recording, or --source browser and the dashboard's "
                "microphone button")


class MicUnavailable(UserError):
    """No microphone can be opened here; the message says why and what to do instead."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_samplerate: float
    hostapi: str
    default: bool


def portaudio() -> ModuleType:
    """The sounddevice module, or MicUnavailable when the PortAudio library is not installed."""
    try:
        import sounddevice
    except OSError as exc:
        raise MicUnavailable(
            f"the microphone needs the PortAudio library, which is not installed ({exc}): "
            f"run `sudo apt-get install libportaudio2` (Debian/Ubuntu), or {ALTERNATIVES}"
        ) from None
    return sounddevice


def rescan(sd: ModuleType) -> None:
    """Make PortAudio list devices again: it reads the list once, so a device plugged back in is
    seen only after the library is restarted."""
    try:
        sd._terminate()
        sd._initialize()
    except sd.PortAudioError as exc:
        raise MicUnavailable(f"PortAudio cannot restart to look for devices ({exc}); {ALTERNATIVES}") from None


def input_devices(sd: ModuleType) -> list[InputDevice]:
    """Every device with at least one input channel."""
    try:
        default_input = sd.default.device[0]
        hostapis = sd.query_hostapis()
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise MicUnavailable(f"PortAudio cannot list audio devices ({exc}); {ALTERNATIVES}") from None
    return [
        InputDevice(d["index"], d["name"], d["max_input_channels"], d["default_samplerate"],
                    hostapis[d["hostapi"]]["name"], d["index"] == default_input)
        for d in devices
        if d["max_input_channels"] > 0
    ]


def choose(devices: list[InputDevice], spec: str) -> InputDevice:
    """The device `spec` names: "" = the default input, digits = an index, else part of a name."""
    if not devices:
        raise MicUnavailable(f"no microphone found (PortAudio lists no input device); {ALTERNATIVES}")
    spec = spec.strip()
    if not spec:
        return next((d for d in devices if d.default), devices[0])
    if spec.isdigit():
        for device in devices:
            if device.index == int(spec):
                return device
        raise MicUnavailable(f"no input device has index {spec}; `python -m streamer devices` lists them")
    matches = [d for d in devices if spec.lower() in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == spec.lower()]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise MicUnavailable(f"no input device name contains {spec!r}; `python -m streamer devices` lists them")
    names = "; ".join(f"{d.index}: {d.name}" for d in matches)
    raise MicUnavailable(f"{spec!r} matches several input devices ({names}); pass its index with --device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "List the microphones (input devices) PortAudio sees; pick one with `run --device NAME|INDEX`."


def run(args: argparse.Namespace) -> int:
    devices = input_devices(portaudio())
    if not devices:
        raise MicUnavailable(f"no microphone found (PortAudio lists no input device); {ALTERNATIVES}")
    print(f"{'index':>5}  {'channels':>8}  {'rate':>7}  {'host API':<12}  name")
    for d in devices:
        mark = "  (default)" if d.default else ""
        print(f"{d.index:>5}  {d.channels:>8}  {d.default_samplerate:>7.0f}  {d.hostapi:<12}  {d.name}{mark}")
    return 0
