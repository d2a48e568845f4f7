//! A demo webhook receiver: verifies each delivery's Standard Webhooks signature and prints it.
//!
//! `cargo run --example demo_receiver -- 127.0.0.1:9000 whsec_…`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use webhookd::secure::sign::{verify_header, SigningKey};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let secret = args.next().expect("usage: demo_receiver ADDR whsec_SECRET");
    let key = SigningKey::from_secret(&secret).expect("a whsec_ secret");
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("demo receiver listening on http://{addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let key = key.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let key = key.clone();
                async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let (id, ts, sig) = (
                        h("webhook-id"),
                        h("webhook-timestamp"),
                        h("webhook-signature"),
                    );
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let ok = ts
                        .parse()
                        .is_ok_and(|ts| verify_header(&key, &id, ts, &body, &sig));
                    let event: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    println!(
                        "{} {} {} {}",
                        if ok { "verified" } else { "INVALID-SIGNATURE" },
                        event["type"].as_str().unwrap_or("?"),
                        id,
                        event["data"]
                    );
                    let status = if ok { 200 } else { 401 };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
