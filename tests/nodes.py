"""Starting and stopping real BEAM nodes for the tests (no mocks of a node, ever)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from arsenal.demo import READY_EXPR, READY_MARKER
from arsenal.sandbox.launcher import HOST, BeamProcess, LaunchSpec, registered_with_epmd, unique_alive

__all__ = [
    "DEMO_ERL_EBIN",
    "DEMO_EX_DIR",
    "HOST",
    "ROOT",
    "TEST_SUPPORT_EBIN",
    "BeamNode",
    "TlsFiles",
    "elixir_demo_node",
    "erl_node",
    "make_tls_files",
    "open_fd_count",
    "registered_with_epmd",
    "settle_resources",
    "unique_name",
]

ROOT = Path(__file__).resolve().parents[1]
DEMO_ERL_EBIN = ROOT / "demo" / "erlang" / "ebin"
DEMO_EX_DIR = ROOT / "demo" / "elixir"
TEST_SUPPORT_EBIN = ROOT / "tests" / "erlang" / "ebin"
LOG_DIR = Path(os.environ.get("ARSENAL_TEST_LOGS", "/tmp/arsenal-test-nodes"))

# The test files' name for it (``prefix_<6 hex>``).
unique_name = unique_alive


@dataclass
class BeamNode:
    """A test node: what to launch (a :class:`LaunchSpec`) and, once started, the process.

    A thin layer over the launcher that Arsenal itself uses (sandboxes, the demo), so
    the suite starts, waits for and kills nodes exactly the way the product does:
    its own session, SIGKILL to the whole group.
    """

    alive: str
    cookie: str
    args: Sequence[str] = ()
    code_paths: Sequence[Path] = ()
    env: dict[str, str] = field(default_factory=dict)
    ready_marker: str | None = None
    program: str = "erl"
    # A long name (``-name alive@host``) instead of a short one.
    host: str | None = None
    # A Debian root whose OTP runs the node (see tests/compat.py).
    root: Path | None = None
    process: BeamProcess | None = None

    def spec(self) -> LaunchSpec:
        return LaunchSpec(
            alive=self.alive,
            cookie=self.cookie,
            code_paths=self.code_paths,
            args=self.args,
            env=self.env,
            log_path=LOG_DIR / f"{self.alive}.log",
            ready_marker=self.ready_marker,
            program=self.program,
            host=self.host,
            root=self.root,
        )

    @property
    def name(self) -> str:
        return self.spec().node_name

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.process is None else self.process.proc

    @property
    def log_path(self) -> Path | None:
        return None if self.process is None else self.process.log_path

    def start(self, timeout: float = 60.0) -> BeamNode:
        """Start the node and wait until it is ready (a ``LaunchError``, a ``RuntimeError``, if not)."""
        self.process = BeamProcess.start(self.spec()).wait_ready(timeout)
        return self

    def kill(self) -> None:
        """SIGKILL the node's whole process group (the way a crash looks to its peers)."""
        if self.process is not None:
            self.process.kill()

    def wait_unregistered(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.wait_unregistered(timeout)


def erl_node(
    prefix: str = "t",
    *,
    cookie: str,
    demo: bool = False,
    extra: list[str] | None = None,
    alive: str | None = None,
    ready_marker: str | None = None,
    host: str | None = None,
) -> BeamNode:
    """A plain ``erl`` node; with ``demo=True`` it runs the plain-Erlang demo tree.

    ``ready_marker``: wait for this text in the node's output (EPMD knows a node
    before its ``-eval``/``-s`` start-up has run). ``host``: a long name on that host.
    """
    code_paths = [TEST_SUPPORT_EBIN]
    args: list[str] = []
    if demo:
        code_paths.append(DEMO_ERL_EBIN)
        args += ["-s", "arsenal_demo_erl", "start", "-eval", 'io:format("ERL_DEMO_READY~n")']
        ready_marker = ready_marker or "ERL_DEMO_READY"
    args += extra or []
    return BeamNode(
        alive or unique_name(prefix),
        cookie,
        args,
        code_paths=code_paths,
        ready_marker=ready_marker,
        host=host,
    )


def elixir_demo_node(*, cookie: str, alive: str | None = None) -> BeamNode:
    """The Elixir demo application as a node, ready once the application has started."""
    ebin = DEMO_EX_DIR / "_build" / "dev" / "lib" / "arsenal_demo" / "ebin"
    return BeamNode(
        alive or unique_name("exdemo"),
        cookie,
        ["-e", READY_EXPR, "--no-halt"],
        code_paths=[ebin],
        ready_marker=READY_MARKER,
        program="elixir",
    )


# --------------------------------------------------------------------------- TLS and leak helpers
# (used by test_tls.py and test_hostile_peer.py)


@dataclass(frozen=True)
class TlsFiles:
    """A test PKI: a CA, a server and a client certificate it signed, and a CA nobody uses."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def dist_optfile(self, name: str = "ssl_dist.conf", *, tls13: bool = False) -> Path:
        """An ``-ssl_dist_optfile`` for mutual TLS (the node's client side uses the server cert)."""
        versions = ", {versions, ['tlsv1.3', 'tlsv1.2']}" if tls13 else ""
        common = (
            f'{{certfile, "{self.server_cert}"}}, {{keyfile, "{self.server_key}"}}, '
            f'{{cacertfile, "{self.ca}"}}, {{verify, verify_peer}}, {{secure_renegotiate, true}}{versions}'
        )
        path = self.directory / name
        path.write_text(
            f"[{{server, [{common}, {{fail_if_no_peer_cert, true}}]}},\n {{client, [{common}]}}].\n"
        )
        return path


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate the PKI with ``cryptography``: every leaf names localhost, 127.0.0.1 and HOST."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def builder(
        subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
        )

    def write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            key_path = path.with_suffix(".key")
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)

    def make_ca(common_name: str, path: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(common_name, name(common_name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write(path, cert)
        return key, cert

    ca_key, ca_cert = make_ca("Arsenal test CA", directory / "ca.pem")
    make_ca("Arsenal untrusted CA", directory / "other-ca.pem")
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.DNSName(HOST),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    leaves = {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
    }
    for leaf, usages in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(HOST, ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        write(directory / f"{leaf}.pem", cert, key)
    return TlsFiles(
        directory=directory,
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )


def open_fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


async def settle_resources(
    fds_before: int, tasks_before: set[object], *, rounds: int = 50
) -> tuple[int, list[str]]:
    """Wait (a few loop turns) for closes to finish; return the open fds and the leftover ``dist-`` tasks.

    ``tasks_before`` is ``asyncio.all_tasks()`` taken before the test started.
    """
    import asyncio

    fds = open_fd_count()
    leftover: list[str] = []
    for _ in range(rounds):
        current = asyncio.current_task()
        leftover = sorted(
            task.get_name()
            for task in asyncio.all_tasks()
            if task is not current and task not in tasks_before and task.get_name().startswith("dist-")
        )
        fds = open_fd_count()
        if fds <= fds_before and not leftover:
            break
        await asyncio.sleep(0.1)
    return fds, leftover
