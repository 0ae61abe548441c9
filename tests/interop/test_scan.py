"""`keyward tls scan` against sslyze, the differential test: three targets, each scanned
by both tools against Mozilla's profiles; both must reach the same verdict, name the same
failing criteria, and see the same accepted versions, cipher suites and curves.

Targets: a fresh `keyward serve`; an nginx (OpenSSL 3) set up as Mozilla's intermediate
profile says, with an ECDSA certificate from keyward's CA; the same with TLS 1.2 only
(so the certificate is read from the clear); and an nginx deliberately
weakened (TLS 1.0 and 1.1, CBC suites, RSA key exchange) with an RSA certificate from
keyward's CA, plus DHE with a 1024-bit group. The nginx processes run from a temporary directory on free loopback ports
and are killed at the end. Without nginx the module fails under CI and skips otherwise.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest


# The Mozilla intermediate cipher list for nginx (ssl-config.mozilla.org, 5.7).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
# Weak on purpose: CBC, RSA key exchange (no forward secrecy), DHE with a 1024-bit group;
# TLS 1.0 needs SECLEVEL 0.
WEAK_CIPHERS = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:DHE-RSA-AES128-GCM-SHA256:AES128-SHA:AES256-SHA:"
    "AES128-GCM-SHA256:@SECLEVEL=0"
)
# The 1024-bit MODP group of RFC 2409 §6.2 (public parameters, too small on purpose).
DH_1024 = """-----BEGIN DH PARAMETERS-----
MIGHAoGBAP//////////yQ/aoiFowjTExmKLgNwc0SkCTgiKZ8x0Agu+pjsTmyJR
Sgh5jjQE3e+VGbPNOkMbMCsKbfJfFDdP4TVtbVHCReSFtXZiXn7G9ExC6aY37WsL
/1y29Aa37e44a/taiZ+lrp8kEXxLH+ZJKGZR7OZTgf//////////AgEC
-----END DH PARAMETERS-----
"""

SSLYZE_VERSIONS = {
    "ssl_3_0": "SSLv3",
    "tls_1_0": "TLSv1",
    "tls_1_1": "TLSv1.1",
    "tls_1_2": "TLSv1.2",
    "tls_1_3": "TLSv1.3",
}

# (target, profile) -> the criteria both tools must name (at least these; and the same set).
CASES = {
    ("keyward", "modern"): set(),
    ("keyward", "intermediate"): set(),
    ("nginx-intermediate", "intermediate"): set(),
    ("nginx-intermediate", "modern"): {"tls_versions", "ciphers"},
    ("nginx-tls12", "intermediate"): set(),
    ("nginx-tls12", "modern"): {"tls_versions", "ciphers"},
    ("nginx-weak", "intermediate"): {"tls_versions", "ciphers", "dh_param_size"},
    ("nginx-weak", "modern"): {"tls_versions", "ciphers", "certificate_types"},
}


@pytest.fixture(scope="module")
def nginx_bin():
    for candidate in [os.environ.get("KEYWARD_NGINX"), shutil.which("nginx"), "/usr/sbin/nginx"]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    why = "no nginx (apt-get install nginx)"
    if os.environ.get("CI"):
        pytest.fail(f"{why}: .ci/run installs it")
    pytest.skip(why)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """A throwaway nginx in the foreground, one TLS server, its files in `root`."""

    def __init__(self, binary, root, cert, key, protocols, ciphers, dhparam=None):
        root.mkdir(parents=True)
        self.root = root
        self.port = free_port()
        conf = root / "nginx.conf"
        dh = f"ssl_dhparam {dhparam};" if dhparam else ""
        temp = " ".join(f"{k}_temp_path {root / k};" for k in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
        conf.write_text(
            f"""daemon off;
master_process off;
worker_processes 1;
pid {root / 'nginx.pid'};
error_log {root / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  {temp}
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols {protocols};
    ssl_ciphers '{ciphers}';
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_prefer_server_ciphers off;
    {dh}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [binary, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(root / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not start listening")
                time.sleep(0.1)

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def keyward(keyward_bin, *args):
    out = subprocess.run([keyward_bin, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def targets(server, keyward_bin, nginx_bin, tmp_path_factory):
    """name -> port, all with certificates from the keyward server's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    tmp = tmp_path_factory.mktemp("nginx")
    data = ["--data-dir", str(server.data_dir)]
    keyward(keyward_bin, "cert", "issue", "--dns", "localhost", "--ip", "127.0.0.1", "--out", str(tmp / "ec"), *data)

    # An RSA leaf: a key and CSR made here, signed by keyward's CA (which takes RSA CSRs).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp / "rsa.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp / "rsa.key").chmod(0o600)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .sign(key, hashes.SHA256())
    )
    (tmp / "rsa.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    keyward(keyward_bin, "cert", "sign", "--csr", str(tmp / "rsa.csr"), "--dns", "localhost", "--out", str(tmp / "rsa.pem"), *data)

    (tmp / "dh1024.pem").write_text(DH_1024)
    started = []
    try:
        started.append(
            Nginx(nginx_bin, tmp / "intermediate", tmp / "ec/cert.pem", tmp / "ec/key.pem", "TLSv1.2 TLSv1.3", INTERMEDIATE_CIPHERS)
        )
        started.append(
            Nginx(nginx_bin, tmp / "weak", tmp / "rsa.pem", tmp / "rsa.key", "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", WEAK_CIPHERS, tmp / "dh1024.pem")
        )
        started.append(
            Nginx(nginx_bin, tmp / "tls12", tmp / "ec/cert.pem", tmp / "ec/key.pem", "TLSv1.2", INTERMEDIATE_CIPHERS)
        )
        port = int(server.env["AWS_ENDPOINT_URL_KMS"].rsplit(":", 1)[1])
        yield {
            "keyward": port,
            "nginx-intermediate": started[0].port,
            "nginx-weak": started[1].port,
            "nginx-tls12": started[2].port,
        }
    finally:
        for n in started:
            n.stop()


def run_keyward(keyward_bin, port, profile, ca):
    out = subprocess.run(
        [keyward_bin, "tls", "scan", f"localhost:{port}", "--ca", ca, "--profile", profile, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode in (0, 1), out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert (report["verdict"] == "compliant") == (out.returncode == 0), report
    versions = {v["version"]: {s["name"] for s in v["cipher_suites"]} for v in report["versions"] if v["supported"]}
    curves = {g["name"] for g in report["groups"] if g["elliptic_curve"]}
    criteria = {f["criterion"] for f in report["findings"]}
    return out.returncode, criteria, versions, curves, report


def run_sslyze(sslyze, port, profile, ca, tmp_path):
    report = tmp_path / f"sslyze-{port}-{profile}.json"
    out = subprocess.run(
        [sslyze, f"--mozilla_config={profile}", f"--certinfo_ca_file={ca}", f"--json_out={report}", f"localhost:{port}{{127.0.0.1}}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stdout + out.stderr
    text = out.stdout
    if out.returncode == 0:
        assert ": OK - Compliant." in text, text
        criteria = set()
    else:
        assert "FAILED - Not compliant." in text, text
        failed = text.split("FAILED - Not compliant.", 1)[1]
        criteria = set(re.findall(r"^\s+\* (\w+): ", failed, re.MULTILINE))
    result = json.loads(report.read_text())["server_scan_results"][0]["scan_result"]
    versions = {}
    for key, name in SSLYZE_VERSIONS.items():
        accepted = result[f"{key}_cipher_suites"]["result"]["accepted_cipher_suites"]
        if accepted:
            versions[name] = {s["cipher_suite"]["name"] for s in accepted}
    curves = {c["name"] for c in (result["elliptic_curves"]["result"]["supported_curves"] or [])}
    return out.returncode, criteria, versions, curves, text


@pytest.mark.parametrize("target,profile", sorted(CASES))
def test_same_verdict_as_sslyze(target, profile, targets, server, keyward_bin, sslyze, tmp_path):
    ca = server.env["AWS_CA_BUNDLE"]
    port = targets[target]
    k_rc, k_criteria, k_versions, k_curves, k_report = run_keyward(keyward_bin, port, profile, ca)
    s_rc, s_criteria, s_versions, s_curves, s_text = run_sslyze(sslyze, port, profile, ca, tmp_path)
    print(f"{target} x {profile}: sslyze rc={s_rc} {sorted(s_criteria)}; keyward rc={k_rc} {sorted(k_criteria)}")
    context = f"keyward: {json.dumps(k_report['findings'], indent=1)}\nsslyze: {s_text}"
    assert k_rc == s_rc, context
    assert k_criteria == s_criteria, context
    assert CASES[(target, profile)] <= k_criteria, context
    if not CASES[(target, profile)]:
        assert k_rc == 0, context
    assert k_versions == s_versions, context
    assert k_curves == s_curves, context
    # Without TLS 1.3 the certificate comes from the Certificate message in the clear.
    cert = k_report["certificate"]
    if target == "nginx-tls12":
        assert cert["source"] == "TLSv1.2 Certificate message", cert
    else:
        assert cert["source"] == "TLSv1.3 handshake", cert
    assert cert["validation"] == "valid" and cert["hostname_matches"], cert
