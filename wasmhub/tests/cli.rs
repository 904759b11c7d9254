//! The `wasmhub` binary against a real registry (Debian's docker-registry)
//! and an independent client (skopeo), with the filters built from this
//! checkout.

// A test binary: helpers may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use meshwasm_artifacts::{FAULT_WASM, ROUTER_WASM};
use meshwasm_local::registry::{Registry, TokenGateway, free_loopback_port};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One user's machine: a layout and a docker config of its own.
struct User {
    home: tempfile::TempDir,
}

/// A finished `wasmhub` run.
struct Run {
    output: Output,
}

impl Run {
    fn ok(self) -> Run {
        assert!(
            self.output.status.success(),
            "wasmhub failed:\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    fn failed(self) -> Run {
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "stdout: {}",
            self.stdout()
        );
        self
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout()))
    }

    fn stderr_has(self, needles: &[&str]) -> Run {
        let stderr = self.stderr();
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "stderr lacks {needle:?}:\n{stderr}"
            );
        }
        self
    }
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmhub"))
            .args(args)
            .env("WASMHUB_LAYOUT", self.path("layout"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env_remove("WASMHUB_INSECURE_REGISTRIES")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, stdin.as_bytes()).unwrap();
        drop(input);
        Run {
            output: child.wait_with_output().unwrap(),
        }
    }
}

fn skopeo(args: &[&str]) -> Output {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (Debian package skopeo) is installed");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn sha256(bytes: &[u8]) -> String {
    wasmhub::digest::sha256(bytes)
}

/// The digest the registry serves for a tag, from its Docker-Content-Digest header.
async fn served_digest(registry: &Registry, repository: &str, tag: &str) -> String {
    let response = reqwest::Client::new()
        .head(format!("http://{}/v2/{repository}/manifests/{tag}", registry.host()))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

fn module_in_oci_dir(dir: &Path, variant: &str) -> Vec<u8> {
    let blob = |digest: &str| {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    match variant {
        "compat" => {
            let layer = blob(layers.last().unwrap()["digest"].as_str().unwrap());
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
            let mut entry = archive
                .entries()
                .unwrap()
                .map(Result::unwrap)
                .find(|e| e.path().unwrap().ends_with("plugin.wasm"))
                .expect("plugin.wasm in the layer");
            let mut module = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut module).unwrap();
            module
        }
        _ => {
            let layer = layers
                .iter()
                .find(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
                .unwrap();
            blob(layer["digest"].as_str().unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_filters_in_both_variants_round_trip_byte_for_byte() {
    let registry = Registry::start().await.unwrap();
    let user = User::new();
    for (filter, wasm) in [("fault", FAULT_WASM), ("router", ROUTER_WASM)] {
        let module = std::fs::read(wasm).unwrap();
        for variant in ["compat", "wasmhub"] {
            let tag = format!("{}/meshwasm/{filter}:{variant}", registry.host());
            let built = user
                .run(&[
                    "--json",
                    "build",
                    wasm,
                    "-t",
                    &tag,
                    "--variant",
                    variant,
                    "--root-id",
                    filter,
                ])
                .ok()
                .json();
            let pushed = user.run(&["--json", "push", &tag]).ok();
            // Not a terminal: no progress bar, nothing on stderr.
            assert_eq!(pushed.stderr(), "");
            let pushed = pushed.json();
            assert_eq!(pushed["digest"], built["digest"]);
            assert_eq!(
                served_digest(&registry, &format!("meshwasm/{filter}"), variant).await,
                built["digest"].as_str().unwrap(),
                "the printed digest is the manifest digest the registry serves"
            );
            assert_eq!(
                pushed["sha256"].as_str().unwrap(),
                &built["digest"].as_str().unwrap()[7..]
            );

            let again = user.run(&["--json", "push", &tag]).ok().json();
            assert_eq!(again["blobsUploaded"], 0, "a second push sends no blob");

            let out = user.path(&format!("{filter}-{variant}.wasm"));
            let pulled = user
                .run(&["--json", "pull", &tag, "-o", out.to_str().unwrap()])
                .ok()
                .json();
            assert_eq!(std::fs::read(&out).unwrap(), module, "{filter} {variant}");
            assert_eq!(pulled["format"], variant);

            let inspected = user
                .run(&["--json", "inspect", "--remote", &tag])
                .ok()
                .json();
            assert_eq!(inspected["digest"], built["digest"]);
            assert_eq!(inspected["istioFormat"], variant);
            assert_eq!(
                inspected["module"]["abiVersions"],
                serde_json::json!(["0.2.1"])
            );
            assert_eq!(inspected["module"]["size"], module.len());
            assert_eq!(inspected["rootIds"], serde_json::json!([filter]));
            let layer_types: Vec<&str> = inspected["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["mediaType"].as_str().unwrap())
                .collect();
            let expected: &[&str] = match variant {
                "compat" => &["application/vnd.oci.image.layer.v1.tar+gzip"],
                _ => &[
                    "application/vnd.module.wasm.config.v1+json",
                    "application/vnd.module.wasm.content.layer.v1+wasm",
                ],
            };
            assert_eq!(layer_types, expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_are_reproducible_across_machines() {
    let (alice, bob) = (User::new(), User::new());
    // Bob's copy of the module has another name, path and modification time.
    let copy = bob.path("renamed.wasm");
    std::fs::copy(ROUTER_WASM, &copy).unwrap();
    let file = std::fs::File::options().write(true).open(&copy).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400))
        .unwrap();
    for variant in ["compat", "wasmhub"] {
        let a = alice
            .run(&[
                "--json",
                "build",
                ROUTER_WASM,
                "-t",
                "example.com/router:1",
                "--variant",
                variant,
            ])
            .ok()
            .json();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = bob
            .run(&[
                "--json",
                "build",
                copy.to_str().unwrap(),
                "-t",
                "example.com/router:1",
                "--variant",
                variant,
            ])
            .ok()
            .json();
        assert_eq!(a["digest"], b["digest"], "{variant}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_reads_what_wasmhub_writes_and_wasmhub_reads_what_skopeo_writes() {
    let registry = Registry::start().await.unwrap();
    let user = User::new();
    let module = std::fs::read(ROUTER_WASM).unwrap();
    let layout = user.path("layout");
    for variant in ["compat", "wasmhub"] {
        let tag = format!("{}/meshwasm/router:{variant}", registry.host());
        let built = user
            .run(&[
                "--json",
                "build",
                ROUTER_WASM,
                "-t",
                &tag,
                "--variant",
                variant,
            ])
            .ok()
            .json();
        user.run(&["push", &tag]).ok();
        let digest = built["digest"].as_str().unwrap();

        let raw = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{tag}"),
        ])
        .stdout;
        assert_eq!(
            sha256(&raw),
            digest,
            "skopeo sees the manifest wasmhub printed"
        );

        let copy = user.path(&format!("skopeo-{variant}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{tag}"),
            &format!("oci:{}:copy", copy.display()),
        ]);
        assert_eq!(module_in_oci_dir(&copy, variant), module, "{variant}");
    }

    // skopeo inspects a compat image as an ordinary image.
    let compat = format!("{}/meshwasm/router:compat", registry.host());
    let info: Value = serde_json::from_slice(
        &skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{compat}"),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(
        (info["Os"].as_str(), info["Architecture"].as_str()),
        (Some("wasip1"), Some("wasm"))
    );

    // skopeo reads the local layout and converts the image to Docker's format,
    // the first of the formats Istio accepts; wasmhub pulls it as Istio would.
    let docker = format!("{}/meshwasm/router:docker", registry.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{}:{compat}", layout.display()),
        &format!("docker://{docker}"),
    ]);
    let out = user.path("docker.wasm");
    let pulled = user
        .run(&["--json", "pull", &docker, "-o", out.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(pulled["format"], "docker (compat)");
    assert_eq!(std::fs::read(&out).unwrap(), module);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_against_an_htpasswd_registry() {
    let registry = Registry::start_with_login("ci", "s3cret:with-colon")
        .await
        .unwrap();
    let user = User::new();
    let tag = format!("{}/meshwasm/fault:1", registry.host());
    user.run(&["build", FAULT_WASM, "-t", &tag]).ok();

    user.run(&["push", &tag]).failed().stderr_has(&[
        "401 Unauthorized",
        "needs a login to push to meshwasm/fault",
        "wasmhub login",
    ]);
    user.run_with_stdin(
        &["login", &registry.host(), "-u", "ci", "--password-stdin"],
        "wrong\n",
    )
    .failed()
    .stderr_has(&["rejected the credentials"]);
    assert!(
        !user.path("docker/config.json").exists(),
        "a failed login stores nothing"
    );

    user.run_with_stdin(
        &["login", &registry.host(), "-u", "ci", "--password-stdin"],
        "s3cret:with-colon\n",
    )
    .ok();
    let config: Value =
        serde_json::from_slice(&std::fs::read(user.path("docker/config.json")).unwrap()).unwrap();
    assert!(
        config["auths"][registry.host()]["auth"].is_string(),
        "{config}"
    );

    user.run(&["push", &tag]).ok();
    let out = user.path("pulled.wasm");
    user.run(&["pull", &tag, "-o", out.to_str().unwrap()]).ok();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(FAULT_WASM).unwrap()
    );

    // Credentials that were right once and are now wrong: a rejection, not "needs a login".
    std::fs::write(
        user.path("docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "ci", "password": "stale"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    user.run(&["pull", &tag])
        .failed()
        .stderr_has(&["401 Unauthorized", "rejected the credentials"]);

    user.run(&["logout", &registry.host()]).ok();
    user.run(&["pull", &tag])
        .failed()
        .stderr_has(&["needs a login to pull from meshwasm/fault"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_push_and_pull_through_the_bearer_token_flow() {
    let registry = Registry::start().await.unwrap();
    let gateway = TokenGateway::start(&registry, "robot", "t0ken")
        .await
        .unwrap();
    let user = User::new();
    let tag = format!("{}/meshwasm/router:1", gateway.host());
    user.run(&["build", ROUTER_WASM, "-t", &tag, "--variant", "wasmhub"])
        .ok();

    user.run(&["push", &tag]).failed().stderr_has(&[
        "401 Unauthorized",
        "needs a login to push to meshwasm/router",
    ]);
    user.run_with_stdin(
        &["login", &gateway.host(), "-u", "robot", "--password-stdin"],
        "nope",
    )
    .failed()
    .stderr_has(&["rejected the credentials"]);
    assert_eq!(gateway.tokens_issued(), 0);

    user.run_with_stdin(
        &["login", &gateway.host(), "-u", "robot", "--password-stdin"],
        "t0ken",
    )
    .ok();
    assert_eq!(
        gateway.tokens_issued(),
        1,
        "login checked the credentials at the token service"
    );
    user.run(&["push", &tag]).ok();
    let out = user.path("router.wasm");
    user.run(&["pull", &tag, "-o", out.to_str().unwrap()]).ok();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(ROUTER_WASM).unwrap()
    );
    assert!(
        gateway.tokens_issued() >= 3,
        "push and pull each traded the login for a token"
    );
}

/// A registry that lets everyone in and then refuses everything, as a
/// registry does for a token without push rights: 403 with a DENIED error.
async fn start_denying_registry() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let ping = request.starts_with(b"GET /v2/ ");
                let (status, body) = if ping {
                    ("200 OK", "{}".to_string())
                } else {
                    (
                        "403 Forbidden",
                        r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
                            .to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    host
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_and_unreachable_registries_say_so() {
    let user = User::new();
    let denying = start_denying_registry().await;
    let tag = format!("{denying}/meshwasm/router:1");
    user.run(&["build", ROUTER_WASM, "-t", &tag]).ok();
    user.run(&["push", &tag])
        .failed()
        .stderr_has(&["403 Forbidden", "may not push to meshwasm/router"]);
    user.run(&["pull", &tag])
        .failed()
        .stderr_has(&["403 Forbidden", "may not pull from meshwasm/router"]);

    let down = free_loopback_port().unwrap();
    user.run(&["pull", &format!("{down}/meshwasm/router:1")])
        .failed()
        .stderr_has(&[
            &format!("cannot reach registry {down}"),
            "onnection refused",
        ]);
}

/// `inspect` of a tag the local layout lacks went to the registry without
/// a word, and a user saw only "cannot reach registry": it says now that
/// the tag is not local and that it asks the registry.
#[test]
fn inspecting_a_tag_that_is_not_local_says_it_asks_the_registry() {
    let user = User::new();
    let down = free_loopback_port().unwrap();
    let tag = format!("{down}/meshwasm/router:9");
    user.run(&[
        "build",
        ROUTER_WASM,
        "-t",
        &format!("{down}/meshwasm/router:1"),
    ])
    .ok();
    let run = user.run(&["inspect", &tag]).failed();
    let stderr = run.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{tag} is not in the local layout ")),
        "{stderr}"
    );
    assert!(
        lines[0].ends_with(&format!("; asking registry {down}")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("error: cannot reach registry {down}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_content_and_wrong_pins_are_refused() {
    let registry = Registry::start().await.unwrap();
    let user = User::new();
    let tag = format!("{}/meshwasm/router:1", registry.host());
    let built = user
        .run(&["--json", "build", ROUTER_WASM, "-t", &tag])
        .ok()
        .json();
    user.run(&["push", &tag]).ok();
    let digest = built["digest"].as_str().unwrap();

    let other = "0".repeat(64);
    user.run(&["pull", &tag, "--sha256", &other])
        .failed()
        .stderr_has(&["digest mismatch", digest, &other]);
    user.run(&[
        "pull",
        &tag,
        "--sha256",
        &digest[7..],
        "-o",
        user.path("pinned.wasm").to_str().unwrap(),
    ])
    .ok();
    user.run(&[
        "pull",
        &format!("{}/meshwasm/router@sha256:{other}", registry.host()),
    ])
    .failed()
    .stderr_has(&["not found"]);

    // Flip one byte of the stored layer: the registry now serves altered content.
    let inspected = user.run(&["--json", "inspect", &tag]).ok().json();
    let layer = inspected["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = registry.blob_file(&layer);
    let mut data = std::fs::read(&file).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&file, data).unwrap();
    user.run(&["pull", &tag])
        .failed()
        .stderr_has(&["digest mismatch on layer 0", &layer]);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_istio_would_refuse_are_named_as_such() {
    use wasmhub::image::Image;
    let registry = Registry::start().await.unwrap();
    let module = std::fs::read(ROUTER_WASM).unwrap();
    // The CNCF Wasm artifact, which Istio does not pull (istio/istio#39990).
    let config =
        br#"{"created":"2026-01-01T00:00:00Z","architecture":"wasm","os":"wasip1"}"#.to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.wasm.content.layer.v1+wasm", "digest": sha256(&module), "size": module.len()}],
    });
    let image = Image::from_parts(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap(),
        config,
        vec![module],
    )
    .unwrap();
    let tag = format!("{}/cncf/router:1", registry.host());
    let reference = wasmhub::registry::parse_reference(&tag).unwrap();
    wasmhub::registry::Registry::default()
        .push(
            &reference,
            &image,
            &oci_client::secrets::RegistryAuth::Anonymous,
            &(),
        )
        .await
        .unwrap();

    let user = User::new();
    user.run(&["pull", &tag]).failed().stderr_has(&[
        "not an image Istio accepts",
        "config application/vnd.wasm.config.v0+json",
        "layers [application/vnd.wasm.content.layer.v1+wasm]",
        "istio/istio#39990",
    ]);
    let inspect = user
        .run(&["inspect", &tag])
        .failed()
        .stderr_has(&["not an image Istio accepts"]);
    assert!(
        inspect.stdout().contains("istio format none"),
        "{}",
        inspect.stdout()
    );
}

#[test]
fn bad_input_gets_a_clear_message() {
    let user = User::new();
    let missing = user.path("missing.wasm");
    user.run(&["build", missing.to_str().unwrap(), "-t", "example.com/a:1"])
        .failed()
        .stderr_has(&["cannot read", "missing.wasm", "No such file"]);

    let json = user.path("config.json");
    std::fs::write(&json, r#"{"hosts": ["*"]}"#).unwrap();
    user.run(&["build", json.to_str().unwrap(), "-t", "example.com/a:1"])
        .failed()
        .stderr_has(&["config.json", "not a WebAssembly module", "7b 22 68 6f"]);

    let plain = user.path("plain.wasm");
    std::fs::write(&plain, b"\0asm\x01\0\0\0").unwrap();
    user.run(&["build", plain.to_str().unwrap(), "-t", "example.com/a:1"])
        .failed()
        .stderr_has(&["not a Proxy-Wasm one", "proxy_abi_version_"]);

    user.run(&["build", ROUTER_WASM, "-t", "Example.com/UPPER:tag"])
        .failed()
        .stderr_has(&["invalid image reference \"Example.com/UPPER:tag\""]);
    let usage = user.run(&[
        "build",
        ROUTER_WASM,
        "-t",
        "example.com/a:1",
        "--variant",
        "cncf",
    ]);
    assert_eq!(usage.output.status.code(), Some(2), "a usage error");
    usage.stderr_has(&["unknown variant \"cncf\": use compat or wasmhub"]);

    user.run(&["build", ROUTER_WASM, "-t", "example.com/router:1"])
        .ok();
    user.run(&["push", "example.com/other:1"])
        .failed()
        .stderr_has(&[
            "no image named example.com/other:1",
            "it holds example.com/router:1",
        ]);

    let failed = user
        .run(&["--json", "push", "example.com/other:1"])
        .failed();
    assert!(
        failed.json()["error"]
            .as_str()
            .unwrap()
            .contains("no image named")
    );
}
