"""The TLS of a fresh `keyward serve`, audited by sslyze (pinned, in target/sslyze-venv):
compliant with Mozilla's `modern` profile (sslyze exits 0), and what it found (TLS 1.3
only, the three TLS 1.3 suites, ECDSA certificate that validates to keyward's CA)."""

import json
import subprocess


def target(server):
    port = server.env["AWS_ENDPOINT_URL_KMS"].rsplit(":", 1)[1]
    return f"localhost:{port}{{127.0.0.1}}"


def test_mozilla_modern_compliant(server, sslyze):
    out = subprocess.run(
        [sslyze, "--mozilla_config=modern", f"--certinfo_ca_file={server.env['AWS_CA_BUNDLE']}", target(server)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'Checking results against Mozilla\'s "modern" configuration' in out.stdout, out.stdout
    assert ": OK - Compliant." in out.stdout, out.stdout


def test_what_sslyze_sees(server, sslyze, tmp_path):
    report = tmp_path / "sslyze.json"
    out = subprocess.run(
        [sslyze, "--quiet", f"--certinfo_ca_file={server.env['AWS_CA_BUNDLE']}", f"--json_out={report}", target(server)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(report.read_text())["server_scan_results"][0]
    assert result["connectivity_status"] == "COMPLETED"
    scan = result["scan_result"]
    for old in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2"]:
        assert scan[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"] == [], old
    suites = {s["cipher_suite"]["name"] for s in scan["tls_1_3_cipher_suites"]["result"]["accepted_cipher_suites"]}
    assert suites == {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}
    deployment = scan["certificate_info"]["result"]["certificate_deployments"][0]
    validation = [r for r in deployment["path_validation_results"] if r["trust_store"]["name"] == "Supplied CA file"]
    assert validation and validation[0]["was_validation_successful"], validation
    assert result["connectivity_result"]["client_auth_requirement"] == "OPTIONAL"
