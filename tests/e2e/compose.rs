//! `examples/docker-compose.yaml`, read by Docker Compose's own parser
//! (`docker-compose config`, which needs no engine), for every Envoy file
//! it can run: the file is valid, runs the official Envoy image of the
//! version we test, mounts the files the local demo runs and the filters
//! `cargo build-filter` writes, and every
//! upstream the Envoy file names (the rate limit service too) is a compose
//! service on the port it uses.

use crate::envoyfilter::EXAMPLES;
use envoyfilter::yaml;
use meshwasm_local::envoy::ENVOY_VERSION;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .unwrap()
}

/// `docker-compose config` on `file` with the environment given; the
/// resolved file as JSON, or the parser's complaint.
fn compose_config(file: &Path, env: &[(&str, &str)]) -> Result<Value, String> {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(file)
        .arg("config")
        .envs(env.iter().copied())
        // Proves no engine is asked: there is none at this address.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("docker-compose (Debian's package; ./scripts/test.sh installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(yaml::load(&text).unwrap().remove(0).value)
}

/// The port a service answers on: http-echo's `-listen=:PORT`, else the
/// port it `expose`s (the rate limit service's gRPC), else http-echo's
/// default.
fn service_port(service: &Value) -> u64 {
    let listen = service["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.strip_prefix("-listen=:"))
        .find_map(|p| p.parse().ok());
    let exposed = service["expose"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()));
    listen.or(exposed).unwrap_or(5678)
}

#[test]
fn the_compose_demo_runs_each_envoy_file_the_local_demo_runs() {
    let compose = examples().join("docker-compose.yaml");
    let mut envoy_files: Vec<PathBuf> = std::fs::read_dir(examples().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    envoy_files.sort();
    assert_eq!(envoy_files.len(), EXAMPLES.len(), "{envoy_files:?}");
    for envoy_file in envoy_files {
        let example = envoy_file.file_stem().unwrap().to_str().unwrap();
        let resolved = compose_config(&compose, &[("MESHWASM_EXAMPLE", example)])
            .unwrap_or_else(|e| panic!("docker-compose config refused the file: {e}"));
        let services = &resolved["services"];
        let envoy = &services["envoy"];
        assert_eq!(envoy["image"], format!("envoyproxy/envoy:v{ENVOY_VERSION}"));
        let command: Vec<&str> = envoy["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let config_in_container = format!("/etc/meshwasm/envoy/{example}.yaml");
        assert_eq!(command[..2], ["-c", config_in_container.as_str()]);
        let volumes: Vec<&str> = envoy["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let repo = examples().parent().unwrap().to_owned();
        assert!(
            volumes.contains(
                &format!(
                    "{}:/etc/meshwasm/envoy:ro",
                    examples().join("envoy").display()
                )
                .as_str()
            ),
            "{volumes:?}"
        );
        let filters_dir = repo.join("target/wasm32-wasip1/wasm");
        assert!(
            volumes
                .contains(&format!("{}:/etc/meshwasm/filters:ro", filters_dir.display()).as_str()),
            "{volumes:?}"
        );
        assert!(
            envoy["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "127.0.0.1:10000:10000/tcp")
        );

        let text = std::fs::read_to_string(&envoy_file).unwrap();
        let config = yaml::load(&text).unwrap().remove(0).value;
        let listener = &config["static_resources"]["listeners"][0]["address"]["socket_address"];
        assert_eq!(
            (
                listener["address"].as_str(),
                listener["port_value"].as_u64()
            ),
            (Some("0.0.0.0"), Some(10000)),
            "{example}: the published port"
        );
        // Each module is one `cargo build-filter` writes.
        let filenames: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("filename: "))
            .map(str::to_owned)
            .collect();
        assert!(!filenames.is_empty());
        for filename in filenames {
            let module = filename
                .strip_prefix("/etc/meshwasm/filters/")
                .unwrap_or_else(|| panic!("{example}: {filename} is not in the mounted filters"));
            // `meshwasm_rate_limit.wasm` is built by `filters/rate-limit`.
            let crate_dir = module
                .trim_end_matches(".wasm")
                .replace("meshwasm_", "")
                .replace('_', "-");
            assert!(
                repo.join("filters")
                    .join(&crate_dir)
                    .join("Cargo.toml")
                    .is_file(),
                "{example}: no filter crate builds {module}"
            );
        }
        // Prometheus scrapes the admin address of every Envoy file, from
        // inside Envoy's network.
        let prometheus = &services["prometheus"];
        assert_eq!(prometheus["network_mode"], "service:envoy");
        let admin = &config["admin"]["address"]["socket_address"];
        let target = format!(
            "{}:{}",
            admin["address"].as_str().unwrap(),
            admin["port_value"].as_u64().unwrap()
        );
        let scrape = std::fs::read_to_string(examples().join("prometheus/prometheus.yml")).unwrap();
        assert!(
            scrape.contains(&format!("[\"{target}\"]")),
            "{example}: Prometheus does not scrape {target}"
        );
        let depends = envoy["depends_on"].as_object().unwrap();
        for cluster in config["static_resources"]["clusters"].as_array().unwrap() {
            for endpoint in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
            {
                let address = &endpoint["endpoint"]["address"]["socket_address"];
                let host = address["address"].as_str().unwrap();
                let service = &services[host];
                assert!(
                    service.is_object(),
                    "{example}: cluster {} names {host}, which is not a compose service",
                    cluster["name"]
                );
                assert_eq!(
                    address["port_value"].as_u64(),
                    Some(service_port(service)),
                    "{example}: {host}'s port"
                );
                assert!(
                    depends.contains_key(host),
                    "{example}: envoy does not wait for {host}"
                );
            }
        }
    }
}

/// Prometheus' own checker accepts the compose demo's scrape configuration.
#[test]
fn prometheus_accepts_the_compose_demos_scrape_config() {
    let out = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(examples().join("prometheus/prometheus.yml"))
        .output()
        .expect("promtool (Debian's prometheus package; ./scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The parser is strict enough to matter: a misspelt option and a
/// dependency on a missing service are refused, by name.
#[test]
fn docker_compose_refuses_a_broken_compose_file() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(examples().join("docker-compose.yaml")).unwrap();
    for (broken, complaint) in [
        (
            original.replace("    depends_on:", "    depend_on:"),
            "depend_on",
        ),
        (
            original.replace("      - reviews-qa\n", "      - reviews-uat\n"),
            "reviews-uat",
        ),
    ] {
        assert_ne!(broken, original);
        let file = dir.path().join("docker-compose.yaml");
        std::fs::write(&file, broken).unwrap();
        let error = compose_config(&file, &[]).unwrap_err();
        assert!(error.contains(complaint), "{error}");
    }
}
