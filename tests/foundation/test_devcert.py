"""The dev certificate of ``reactor dev --forge``: made once, trusted for 127.0.0.1, renewed."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import threading
from pathlib import Path

from cryptography import x509

from app.devcert import RENEW_BEFORE, VALID_DAYS, dev_certificate


def test_made_once_and_kept_while_valid(tmp_path: Path) -> None:
    cert, key = dev_certificate(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = cert.read_bytes()
    assert dev_certificate(tmp_path) == (cert, key)
    assert cert.read_bytes() == first


def test_renewed_when_close_to_expiry(tmp_path: Path) -> None:
    cert, _ = dev_certificate(tmp_path)
    first = cert.read_bytes()
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=VALID_DAYS) - RENEW_BEFORE
    dev_certificate(tmp_path, now=later)
    assert cert.read_bytes() != first
    renewed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert renewed.not_valid_after_utc > later


def test_a_client_trusting_it_completes_a_handshake_with_127_0_0_1(tmp_path: Path) -> None:
    cert, key = dev_certificate(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))  # what SSL_CERT_FILE gives
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(5)
    listener.close()
