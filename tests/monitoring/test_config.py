"""Rendered monitoring configuration, checked by the real tools: promtool, amtool, blackbox_exporter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from components import monitoring_config as mc
from components.settings import AlertingConfig, Settings, SettingsError, parse_settings
from policy_plan.program import stack_config
from tests.monitoring.support import REPO, run, tool

RULES_TEST = REPO / "tests" / "monitoring" / "rules_test.yml"
REQUIRED_ALERTS = {
    "Api5xxRate",
    "LatencyP95",
    "DbDown",
    "CertExpirySoon",
    "OAuth2ErrorsSpike",
    "ContainerRestarts",
    "InstanceDown",
    "BackupTooOld",
    "BackupJobFailed",
    "WalArchiveFailing",
}


def settings_for(stack: str, **overrides: object) -> Settings:
    config = stack_config(stack)
    config.update(overrides)
    return parse_settings(config, stack=stack)


def write_layout(root: Path, settings: Settings) -> mc.MonitoringPaths:
    """The files Prometheus and Alertmanager read, at their container paths below ``root``."""
    paths = mc.PATHS.under(root)
    for path, text in (
        (paths.prometheus_config, mc.render_prometheus_config(settings, paths)),
        (paths.rules, mc.render_rules(settings)),
        (paths.metrics_token, "t" * 40),
        (paths.smtp_password, "smtp-secret"),
        (paths.blackbox_config, mc.render_blackbox_config(settings, paths)),
        (paths.internal_ca, "test CA certificate\n"),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return paths


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_promtool_accepts_the_rendered_prometheus_config_and_rules(stack: str, tmp_path: Path) -> None:
    settings = settings_for(stack)
    paths = write_layout(tmp_path, settings)
    checked = run([tool("promtool"), "check", "config", paths.prometheus_config])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "rule files found" in checked.stdout
    rules = run([tool("promtool"), "check", "rules", paths.rules])
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = run([tool("promtool"), "test", "rules", str(RULES_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_runbook_and_a_firing_and_a_quiet_case() -> None:
    rules = [rule for group in yaml.safe_load(mc.RULES_SOURCE.read_text())["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert names >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["annotations"].get("runbook"), f"{rule['alert']} has no runbook annotation"
        assert rule["labels"].get("severity") in {"critical", "warning"}
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a quiet case"


def test_scrape_jobs_cover_the_platform_with_the_token_where_needed() -> None:
    settings = settings_for("prod")
    config = yaml.safe_load(mc.render_prometheus_config(settings))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {
        "prometheus",
        "alertmanager",
        "backend",
        "postgres_exporter",
        "sql_exporter",
        "node_exporter",
        "oauth2_proxy",
        "keycloak",
        "container_exporter",
        "backup",
        "blackbox_tls",
    }
    # R-SEC-5: every metrics endpoint of the platform, and the probe endpoint, are scraped with the token from a
    # file: Prometheus, Alertmanager, oauth2-proxy and Keycloak through their metrics gates too.
    for name, job in jobs.items():
        assert job["authorization"] == {"type": "Bearer", "credentials_file": mc.PATHS.metrics_token}, name
    assert "credentials" not in mc.render_prometheus_config(settings).replace("credentials_file", "")
    assert jobs["keycloak"]["metrics_path"] == "/sso/metrics"
    assert jobs["keycloak"]["static_configs"][0]["targets"] == ["keycloak:9000"]
    assert jobs["oauth2_proxy"]["static_configs"][0]["targets"] == ["oauth2-proxy:44180"]
    assert jobs["postgres_exporter"]["static_configs"][0]["targets"] == ["postgres-exporter:9187"]
    probe = jobs["blackbox_tls"]
    assert probe["params"] == {"module": [mc.BLACKBOX_TLS_MODULE]}
    assert probe["static_configs"][0]["targets"] == ["nginx:443"]
    assert {"target_label": "__address__", "replacement": "blackbox-exporter:9115"} in probe["relabel_configs"]
    assert config["global"]["external_labels"] == {"stack": "prod"}


def test_dev_has_no_certificate_probe_and_backups_off_drops_their_job_and_rules() -> None:
    dev = settings_for("dev")
    assert mc.certificate_probe_target(dev) is None
    assert "blackbox_tls" not in mc.render_prometheus_config(dev)
    without = settings_for("dev", features={"backups": False})  # prod refuses backups off (R-DB-2)
    assert "job_name: backup" not in mc.render_prometheus_config(without)
    assert "BackupTooOld" not in mc.render_rules(without)
    assert "BackupTooOld" in mc.render_rules(dev)


def test_blackbox_exporter_accepts_the_probe_modules(tmp_path: Path) -> None:
    for mode in ("internal_ca", "provided"):
        settings = settings_for("prod")
        if mode == "provided":
            settings = settings.model_copy(
                update={
                    "raw": settings.raw.model_copy(
                        update={"tls": settings.raw.tls.model_copy(update={"mode": "provided"})}
                    )
                }
            )
        config = tmp_path / f"blackbox-{mode}.yml"
        paths = write_layout(tmp_path / mode, settings)
        config.write_text(mc.render_blackbox_config(settings, paths))
        result = run([tool("blackbox_exporter"), f"--config.file={config}", "--config.check"])
        assert result.returncode == 0, result.stdout + result.stderr
        tls_config = yaml.safe_load(config.read_text())["modules"][mc.BLACKBOX_TLS_MODULE]["tcp"]["tls_config"]
        assert tls_config["server_name"] == "flypotato.example.com"
        # R-TLS-4: verified in both modes; the internal CA is the trust anchor of its own stacks.
        assert tls_config["insecure_skip_verify"] is False
        assert tls_config.get("ca_file") == (paths.internal_ca if mode == "internal_ca" else None)


RECEIVERS = {
    "none": {},
    "email": {
        "email_to": ["oncall@example.com", "dba@example.com"],
        "smtp_smarthost": "smtp.example.com:587",
        "smtp_from": "alerts@example.com",
        "smtp_username": "alerts",
        "smtp_password": "smtp-secret",
    },
    "webhook": {"webhook_url": "https://hooks.example.com/services/T0/B0/secret-part"},
}
RECEIVERS["both"] = RECEIVERS["email"] | RECEIVERS["webhook"]


@pytest.mark.parametrize("kind", sorted(RECEIVERS))
def test_amtool_accepts_the_alertmanager_config(kind: str, tmp_path: Path) -> None:
    settings = settings_for("prod", alerting=RECEIVERS[kind])
    paths = write_layout(tmp_path, settings)
    text = mc.render_alertmanager_config(settings, paths)
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    result = run([tool("amtool"), "check-config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smtp-secret" not in text  # the SMTP password is a file
    parsed = yaml.safe_load(text)
    receiver = parsed["receivers"][0]
    assert ("email_configs" in receiver) is (kind in {"email", "both"})
    assert ("webhook_configs" in receiver) is (kind in {"webhook", "both"})
    if "email_configs" in receiver:
        assert parsed["global"]["smtp_auth_password_file"] == paths.smtp_password
        assert receiver["email_configs"][0]["to"] == "oncall@example.com, dba@example.com"
    assert mc.alertmanager_config_is_secret(settings) is ("webhook_configs" in receiver)
    routed = run(
        [
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            "alertname=DbDown",
            "severity=critical",
            "stack=prod",
        ]
    )
    assert routed.returncode == 0 and routed.stdout.strip() == "platform", routed.stdout + routed.stderr


def test_alertmanager_groups_and_inhibits() -> None:
    parsed = yaml.safe_load(mc.render_alertmanager_config(settings_for("prod")))
    assert parsed["route"]["group_by"] == ["alertname", "stack", "job"]
    inhibit = {
        (tuple(rule["source_matchers"]), tuple(rule["target_matchers"])): rule["equal"]
        for rule in parsed["inhibit_rules"]
    }
    assert inhibit[(('alertname="DbDown"',), ('alertname=~"Api5xxRate|LatencyP95|BackupTooOld|BackupJobFailed"',))] == [
        "stack"
    ]
    assert inhibit[(('alertname="InstanceDown"',), ('alertname!="InstanceDown"',))] == ["stack", "job"]


def test_email_receiver_needs_its_smtp_settings() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_for("prod", alerting={"email_to": ["oncall@example.com"]})
    message = str(caught.value)
    assert "fly-potato:alerting.smtp_smarthost" in message and "fly-potato:alerting.smtp_from" in message
    assert AlertingConfig(webhook_url=SecretStr("https://x.example.com/h")).webhook_url is not None


def test_sql_exporter_queries_call_the_metrics_functions_and_name_no_table() -> None:
    settings = settings_for("prod")
    config = yaml.safe_load(mc.render_sql_exporter_config(settings, mc.sql_exporter_dsn(settings, "pw")))
    job = config["jobs"][0]
    assert job["connections"] == ["postgres://exporter:pw@postgres:5433/flypotato?sslmode=disable"]
    queries = {q["name"]: q for q in job["queries"]}
    assert queries["flypotato_flights"]["query"].endswith("FROM metrics.flights()")
    assert queries["flypotato_flow_events"]["query"].endswith("FROM metrics.flow_events()")
    assert not any("app." in q["query"] for q in job["queries"])  # the exporter role reads no table (R-DB-1)
