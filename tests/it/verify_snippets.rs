//! SPEC 4 and 6a, the portal's verification programs: each program the page shows (Python,
//! Node.js, Go), run as a real receiver from the very file the page embeds, verifies real
//! deliveries, keeps verifying through a secret rotation, and refuses a tampered body, a
//! replayed timestamp and a foreign secret. The page shows them to the tenant's session and
//! nothing of another tenant's. Real webhookd, real Redis, real interpreters.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};
use webhookd::support::clock::now_secs;

use crate::api_common::*;
use crate::common::*;

pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// `go run` compiles the standard library's HTTP server into a fresh cache first.
pub(crate) const START: Duration = Duration::from_secs(180);
/// An endpoint change reaches the dispatcher within 1 s (SPEC 6).
pub(crate) const VISIBLE: Duration = Duration::from_millis(1500);
pub(crate) const TENANT: &str = "acct_v";

/// A language the page has a program for, and how the tests run it.
pub(crate) struct Lang {
    /// Set by `scripts/langs-for-tests.sh`; `fallback` from `PATH` without it.
    pub(crate) program_env: &'static str,
    pub(crate) fallback: &'static str,
    /// The Debian package that brings the program.
    pub(crate) package: &'static str,
    pub(crate) args: &'static [&'static str],
    pub(crate) file: &'static str,
    /// Go builds before it runs: it gets its own cache and no module proxy.
    pub(crate) builds: bool,
}

pub(crate) const PYTHON: Lang = Lang {
    program_env: "WEBHOOKD_TEST_PYTHON",
    fallback: "python3",
    package: "python3",
    args: &[],
    file: "verify.py",
    builds: false,
};
pub(crate) const NODE: Lang = Lang {
    program_env: "WEBHOOKD_TEST_NODE",
    fallback: "node",
    package: "nodejs",
    args: &[],
    file: "verify.js",
    builds: false,
};
pub(crate) const GO: Lang = Lang {
    program_env: "WEBHOOKD_TEST_GO",
    fallback: "go",
    package: "golang-go",
    args: &["run"],
    file: "verify.go",
    builds: true,
};

/// The program as the portal embeds it.
pub(crate) fn snippet(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/api/portal/snippets")
        .join(file)
}

/// A verification program listening as a receiver; its whole process group is killed when
/// dropped (`go run` would leave the program it built running).
pub(crate) struct Program {
    name: String,
    child: Child,
    port: u16,
    out: Arc<Mutex<Vec<String>>>,
    err: PathBuf,
}

impl Program {
    /// Starts `lang`'s program with `secret` on `port` and waits (bounded) until it listens.
    pub(crate) async fn start(lang: &Lang, secret: &str, port: u16, scratch: &Path) -> Program {
        let program = std::env::var(lang.program_env).unwrap_or_else(|_| lang.fallback.into());
        let err = scratch.join(format!("{}.stderr", lang.file));
        let mut cmd = Command::new(&program);
        cmd.args(lang.args)
            .arg(snippet(lang.file))
            .current_dir(scratch)
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", port.to_string())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap());
        if lang.builds {
            cmd.env("HOME", scratch)
                .env("GOCACHE", scratch.join("go-cache"))
                .env("GOPATH", scratch.join("go"))
                .env("GOPROXY", "off");
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): install Debian's `{package}` \
                 (scripts/langs-for-tests.sh does)",
                package = lang.package
            )
        });
        let out: Arc<Mutex<Vec<String>>> = Arc::default();
        let (lines, stdout) = (out.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut p = Program {
            name: format!("{program} {}", lang.file),
            child,
            port,
            out,
            err,
        };
        let mut exited = None;
        let child = &mut p.child;
        let up = wait_until(START, || {
            exited = child.try_wait().unwrap();
            exited.is_some() || TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        if !up || exited.is_some() {
            panic!(
                "{} did not listen on {port} ({exited:?}): {}",
                p.name,
                p.stderr()
            );
        }
        p
    }

    pub(crate) fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Ends the program and waits (bounded) until its port is free for the next one.
    pub(crate) async fn stop(self) {
        let port = self.port;
        drop(self);
        let free = wait_until(WAIT, || TcpStream::connect(("127.0.0.1", port)).is_err()).await;
        assert!(free, "port {port} still answers after the program ended");
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

/// Publishes `event` to the tenant; the program prints `verified <event>` and the endpoint's
/// attempts show it answered 204.
pub(crate) async fn delivered(api: &Api, path: &str, program: &Program, event: &str) {
    let (status, body) = api.publish_event(event, TENANT).await;
    assert_eq!(status, 202, "{body}");
    let line = format!("verified {event}");
    let verified = wait_until(WAIT, || program.stdout().contains(&line)).await;
    assert!(
        verified,
        "{} never printed {line:?}; it printed {:?}; stderr: {}",
        program.name,
        program.stdout(),
        program.stderr()
    );
    let attempts = format!("{path}/attempts?limit=50");
    let logged = wait_until_async(WAIT, || async {
        api.get(&attempts).await.1["data"]
            .as_array()
            .is_some_and(|d| {
                d.iter()
                    .any(|a| a["event_id"] == event && a["status"] == 204)
            })
    })
    .await;
    assert!(logged, "{event}: {}", api.get(&attempts).await.1);
}

/// A request signed with each of `secrets` (by the independent `standardwebhooks` crate) over
/// `signed_body` but carrying `body`; the program's answer.
async fn forged(port: u16, ts: i64, secrets: &[&str], signed_body: &str, body: &str) -> u16 {
    let id = "evt_forged";
    let sig: Vec<String> = secrets
        .iter()
        .map(|secret| {
            standardwebhooks::Webhook::new(secret)
                .unwrap()
                .sign(id, ts, signed_body.as_bytes())
                .unwrap()
        })
        .collect();
    let headers = [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sig.join(" ")),
    ];
    let url = format!("http://127.0.0.1:{port}/");
    http_request(Method::POST, &url, &headers, Some(body.to_string()))
        .await
        .0
}

/// The promise for one language, from a fresh endpoint to a finished secret rotation.
async fn verifies_deliveries_through_a_rotation_and_refuses_forgeries(lang: &Lang) {
    let setup =
        Setup::new(lang.fallback).with("retry:\n  schedule: [200ms, 500ms, 1s]\n  jitter: 0\n");
    let (_setup, _w, api) = admin_api(setup).await;
    let port = free_port();
    let ep = api
        .create_endpoint(
            TENANT,
            json!({"url": format!("http://127.0.0.1:{port}/"), "filters": ["*"]}),
        )
        .await;
    let old = ep["secret"].as_str().unwrap().to_string();
    let path = ep_path(TENANT, &ep["id"]);
    let scratch = tempfile::tempdir().unwrap();
    let program = Program::start(lang, &old, port, scratch.path()).await;
    tokio::time::sleep(VISIBLE).await;
    delivered(&api, &path, &program, "evt_first").await;

    let body = r#"{"id":"evt_forged","amount":1}"#;
    let now = now_secs();
    assert_eq!(
        forged(port, now, &[&old], body, body).await,
        204,
        "the control: signed right, it passes"
    );
    let tampered = r#"{"id":"evt_forged","amount":1000}"#;
    assert_eq!(
        forged(port, now, &[&old], body, tampered).await,
        400,
        "a tampered body"
    );
    assert_eq!(
        forged(port, now - 600, &[&old], body, body).await,
        400,
        "a replay 10 minutes old"
    );
    assert_eq!(
        forged(port, now, &[SECRET], body, body).await,
        400,
        "another secret's signature"
    );
    assert_eq!(
        forged(port, now, &[SECRET, &old], body, body).await,
        204,
        "any entry of the header may match"
    );
    rejected_then_rotated(&api, &path, program, 3, lang, port, scratch.path()).await;
}

/// The program printed `rejected` for each forgery; then the endpoint's key is rotated: a
/// delivery during the overlap verifies with the old key (its entry comes second, after the
/// new key's), and one after the program switched keys verifies with the new.
pub(crate) async fn rejected_then_rotated(
    api: &Api,
    path: &str,
    program: Program,
    forgeries: usize,
    lang: &Lang,
    port: u16,
    scratch: &Path,
) {
    // Each forgery was answered 400 already, but the line the program printed for it comes
    // through a pipe and a reader task, which may lag behind on a busy machine.
    let rejected = || {
        program
            .stdout()
            .iter()
            .filter(|l| l.starts_with("rejected "))
            .count()
    };
    wait_until(Duration::from_secs(10), || rejected() >= forgeries).await;
    assert_eq!(rejected(), forgeries, "{:?}", program.stdout());
    let (status, rotated) = api.post(&format!("{path}/secret/rotate"), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    tokio::time::sleep(VISIBLE).await;
    delivered(api, path, &program, "evt_during_overlap").await;
    program.stop().await;
    let program = Program::start(lang, &new, port, scratch).await;
    delivered(api, path, &program, "evt_after_switch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_program_verifies_deliveries_through_a_rotation_and_refuses_forgeries() {
    verifies_deliveries_through_a_rotation_and_refuses_forgeries(&PYTHON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_program_verifies_deliveries_through_a_rotation_and_refuses_forgeries() {
    verifies_deliveries_through_a_rotation_and_refuses_forgeries(&NODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_program_verifies_deliveries_through_a_rotation_and_refuses_forgeries() {
    verifies_deliveries_through_a_rotation_and_refuses_forgeries(&GO).await;
}

/// A portal session's cookie, from a link minted by an admin at `path` with `body`.
pub(crate) async fn session_cookie(setup: &Setup, path: &str, body: Value) -> String {
    let (status, link) = Api::admin(setup).post(path, body).await;
    assert_eq!(status, 201, "{link}");
    let login = format!("{}{}", setup.api(), link["url"].as_str().unwrap());
    let (status, headers, page) = http_request(Method::GET, &login, &[], None).await;
    assert_eq!(status, 303, "{page}");
    let set = headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// A portal page as the browser with `cookie` gets it.
pub(crate) async fn page(setup: &Setup, path: &str, cookie: &str) -> (u16, String) {
    let url = format!("{}{path}", setup.api());
    let (status, _, body) =
        http_request(Method::GET, &url, &[("cookie", cookie.to_string())], None).await;
    (status, body)
}

pub(crate) fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_page_shows_the_tenant_each_program_and_nothing_of_another_tenant() {
    let setup = Setup::new("verify_page")
        .endpoint("ep_v", "t1", "https://example.com/v", &["*"])
        .endpoint("ep_b", "t2", "https://example.com/b", &["*"]);
    let _w = Webhookd::start(&setup).await;
    let cookie = session_cookie(&setup, "/v1/tenants/t1/portal-sessions", json!({})).await;
    let (status, shown) = page(&setup, "/portal/endpoints/ep_v/verify", &cookie).await;
    assert_eq!(status, 200, "{shown}");
    for (file, heading, run) in [
        ("verify.py", "python-h", "python3 verify.py"),
        ("verify.js", "node-h", "node verify.js"),
        ("verify.go", "go-h", "go run verify.go"),
    ] {
        let source = std::fs::read_to_string(snippet(file)).unwrap();
        let code = format!("<pre><code>{}</code></pre>", html_escaped(&source));
        assert!(shown.contains(&code), "{file}, whole and escaped: {shown}");
        assert!(shown.contains(&format!("<h2 id=\"{heading}\">")), "{shown}");
        assert!(shown.contains(run), "how to run {file}: {shown}");
    }
    assert!(
        shown.contains("<code>https://example.com/v</code>"),
        "{shown}"
    );
    assert!(
        shown.contains("href=\"/portal/endpoints/ep_v\""),
        "back to the endpoint: {shown}"
    );
    assert!(
        shown.contains("reveals the secret"),
        "where the secret is: {shown}"
    );
    assert!(
        !shown.contains("src=\"http") && !shown.contains("href=\"http"),
        "nothing from elsewhere: {shown}"
    );
    let (status, endpoint) = page(&setup, "/portal/endpoints/ep_v", &cookie).await;
    assert_eq!(status, 200, "{endpoint}");
    assert!(
        endpoint.contains("href=\"/portal/endpoints/ep_v/verify\""),
        "the endpoint's page links here: {endpoint}"
    );

    for other in ["ep_b", "ep_missing"] {
        let (status, refused) = page(
            &setup,
            &format!("/portal/endpoints/{other}/verify"),
            &cookie,
        )
        .await;
        assert_eq!(status, 404, "{other}: {refused}");
        assert!(refused.contains("There is no such endpoint."), "{refused}");
        assert!(!refused.contains("example.com/b"), "{refused}");
    }

    let read_only = json!({"read_only": true});
    let ro = session_cookie(&setup, "/v1/tenants/t1/portal-sessions", read_only).await;
    let (status, shown) = page(&setup, "/portal/endpoints/ep_v/verify", &ro).await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        shown.contains("read-only") && !shown.contains("reveals the secret"),
        "a read-only session is told it shows no secret: {shown}"
    );
    let operator = session_cookie(&setup, "/v1/portal-sessions", json!({})).await;
    let (status, _) = page(&setup, "/portal/endpoints/ep_b/verify", &operator).await;
    assert_eq!(status, 404, "the operator view has no endpoint pages");
    let (status, _) = page(&setup, "/portal/endpoints/ep_v/verify", "").await;
    assert_eq!(status, 401, "no session, no page");
}
