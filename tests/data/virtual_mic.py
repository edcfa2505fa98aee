"""A private PulseAudio server with a virtual microphone, for the audio end-to-end test and the app benchmark.

It starts ``pulseaudio`` in user mode (it also runs as root: without ``--system`` it only prints a
warning) with its socket in a given runtime folder, a 16 kHz mono null sink ``vspk`` and a source
``vmic`` remapped from the sink's monitor, both set as defaults. Anything played into ``vspk``
(``paplay --device=vspk file.wav``) is recorded from ``vmic``; sounddevice reaches it through the
ALSA device ``pulse`` (Debian ``libasound2-plugins``). No stdin, no D-Bus, no login session needed.

Run ``python tests/data/virtual_mic.py`` to start one and print its environment (Ctrl-C stops it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class VirtualMicUnavailable(RuntimeError):
    """PulseAudio cannot be started here; the message says why."""


def server_environment(runtime: Path) -> dict[str, str]:
    """Environment of the private server and its tools (pactl, paplay): everything it writes stays in ``runtime``."""
    return {"XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
            "PULSE_SERVER": f"unix:{runtime / 'pulse' / 'native'}", "PULSE_STATE_PATH": str(runtime / "state"),
            "PULSE_COOKIE": str(runtime / "cookie"), "HOME": str(runtime)}


def pulse_environment(runtime: Path) -> dict[str, str]:
    """What a client process (the app, through ALSA's pulse plugin) needs to reach the server: only its address.

    The server accepts anonymous clients, so nothing else (HOME, a cookie, a runtime folder) has to change.
    """
    return {"PULSE_SERVER": f"unix:{runtime / 'pulse' / 'native'}"}


@dataclass
class VirtualMicrophone:
    """A running private PulseAudio server."""

    runtime: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing a WAV into the virtual speaker (returns the paplay process)."""
        return subprocess.Popen(["paplay", "--device=vspk", str(wav)], env=self.env, stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_virtual_microphone(runtime: Path, timeout_s: float = 15.0) -> VirtualMicrophone:
    """Start the server with its socket under ``runtime`` (created, mode 700).

    Raises:
        VirtualMicUnavailable: a tool is missing or the server does not come up; says why.
    """
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        raise VirtualMicUnavailable(f"{', '.join(missing)} not installed (Debian: pulseaudio pulseaudio-utils)")
    (runtime / "pulse").mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    env = {**os.environ, **server_environment(runtime)}
    log_path = runtime / "pulseaudio.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
             "--disable-shm=yes", "--log-target=stderr", "--system=false",
             "-L", f"module-native-protocol-unix auth-anonymous=1 socket={runtime / 'pulse' / 'native'}",
             "-L", "module-null-sink sink_name=vspk rate=16000 channels=1",
             "-L", "module-remap-source source_name=vmic master=vspk.monitor",
             "-L", "module-always-sink"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        probe = subprocess.run(["pactl", "info"], env=env, capture_output=True, stdin=subprocess.DEVNULL)
        if probe.returncode == 0:
            break
        time.sleep(0.2)
    else:
        if process.poll() is None:
            process.kill()
            process.wait()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise VirtualMicUnavailable(" | ".join(tail) or f"no server socket within {timeout_s:.0f} s")
    for command in (["pactl", "set-default-sink", "vspk"], ["pactl", "set-default-source", "vmic"],
                    ["pactl", "set-sink-volume", "vspk", "100%"], ["pactl", "set-source-volume", "vmic", "100%"]):
        subprocess.run(command, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return VirtualMicrophone(runtime=runtime, process=process, env=env)


if __name__ == "__main__":
    import tempfile

    mic = start_virtual_microphone(Path(tempfile.mkdtemp(prefix="vmic-")))
    for key, value in pulse_environment(mic.runtime).items():
        print(f"export {key}={value}")
    try:
        mic.process.wait()
    except KeyboardInterrupt:
        mic.stop()
        sys.exit(0)
