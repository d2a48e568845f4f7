//! Bodies waiting in the retry queue, stored once per body rather than once per delivery: an
//! event fanned out to 50 failing endpoints keeps one copy, not 50.
//!
//! A stored job leaves its body out and names it instead: its JSON starts with
//! `{"body_ref":"<128-bit SHA-256 hex>"`. The body lives in `{retry}:bodies` under that name,
//! with the number of jobs naming it in `{retry}:bodyrefs`; the last job to go takes the body
//! with it. The scripts that write, read and drop jobs share the Lua below, so the count can
//! never drift from the jobs. A job a build before this one stored keeps its body inline and
//! is read and dropped as it is.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::retry::job::Job;

/// Lua functions every retry-queue script begins with. `jobs`, `bodies`, `refs` are the keys.
pub(crate) const LUA: &str = r#"
local function body_ref(raw)
  return string.match(raw, '^{"body_ref":"(%x+)"')
end
local function release(bodies, refs, ref)
  if ref and redis.call('HINCRBY', refs, ref, -1) <= 0 then
    redis.call('HDEL', refs, ref)
    redis.call('HDEL', bodies, ref)
  end
end
-- Stores (or replaces) a job; `body` is kept under `ref` unless already there.
local function put_job(jobs, bodies, refs, id, raw, ref, body)
  local old = redis.call('HGET', jobs, id)
  redis.call('HSET', jobs, id, raw)
  local old_ref = old and body_ref(old)
  if old_ref == ref then return end
  release(bodies, refs, old_ref)
  redis.call('HINCRBY', refs, ref, 1)
  redis.call('HSETNX', bodies, ref, body)
end
local function drop_job(jobs, bodies, refs, id)
  local old = redis.call('HGET', jobs, id)
  if not old then return end
  redis.call('HDEL', jobs, id)
  release(bodies, refs, body_ref(old))
end
-- A job as stored, and its body ('' when inline, or for a missing job).
local function read_job(jobs, bodies, id)
  local raw = redis.call('HGET', jobs, id)
  if not raw then return '', '' end
  local ref = body_ref(raw)
  return raw, ref and (redis.call('HGET', bodies, ref) or '') or ''
end
"#;

/// A script made of `LUA` and `body`.
pub(crate) fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{LUA}{body}"))
}

/// A job as a script stores it.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) raw: String,
    pub(crate) body_ref: String,
    pub(crate) body: String,
}

#[derive(Serialize)]
struct WithRef<'a> {
    body_ref: &'a str,
    #[serde(flatten)]
    job: &'a Job,
}

impl Stored {
    pub(crate) fn of(job: &Job) -> Stored {
        let digest = Sha256::digest(job.body.as_bytes());
        let body_ref = crate::support::hex::encode(&digest[..16]);
        let raw = serde_json::to_string(&WithRef {
            body_ref: &body_ref,
            job,
        })
        .expect("jobs serialize");
        Stored {
            raw,
            body_ref,
            body: job.body.clone(),
        }
    }

    /// Its arguments, in the order `put_job` takes them after the id.
    pub(crate) fn args(&self, call: &mut redis::ScriptInvocation<'_>) {
        call.arg(&self.raw).arg(&self.body_ref).arg(&self.body);
    }
}

/// The body a stored job names, if it names one.
pub(crate) fn ref_of(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix(r#"{"body_ref":""#)?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// A job read back: `body` joins a job stored by reference ('' for an inline one). `None`
/// when this build cannot read it.
pub(crate) fn load(raw: &str, body: String) -> Option<Job> {
    let mut job: Job = serde_json::from_str(raw).ok()?;
    if !body.is_empty() {
        job.body = body;
    }
    (!job.body.is_empty()).then_some(job)
}

/// Triples (id, job, body) from a script's answer.
pub(crate) fn jobs_of(raw: &[String]) -> Vec<(String, Option<Job>)> {
    raw.chunks_exact(3)
        .map(|t| (t[0].clone(), load(&t[1], t[2].clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: &str) -> Job {
        Job {
            id: "d1".into(),
            tenant: "t".into(),
            endpoint_id: "ep".into(),
            event_id: "e".into(),
            event_type: "a.b".into(),
            body: body.into(),
            attempts: 1,
            first_attempt_at: 1,
            published_at: 1,
            last_status: Some(500),
            last_error: None,
            deferrals: 0,
            queued_at: 0,
            trace: None,
        }
    }

    #[test]
    fn a_stored_job_names_its_body_first_and_leaves_it_out() {
        let s = Stored::of(&job(r#"{"body_ref":"x"}"#));
        assert!(s
            .raw
            .starts_with(&format!(r#"{{"body_ref":"{}""#, s.body_ref)));
        assert_eq!(s.body_ref.len(), 32);
        assert!(!s.raw.contains("\"body\""), "{}", s.raw);
        assert_eq!(ref_of(&s.raw), Some(s.body_ref.as_str()));
        assert_eq!(ref_of(r#"{"id":"d1","body":"{}"}"#), None);
        assert_eq!(
            load(&s.raw, s.body.clone()),
            Some(job(r#"{"body_ref":"x"}"#))
        );
    }

    #[test]
    fn an_inline_job_of_an_earlier_build_still_loads_and_one_without_body_does_not() {
        let inline = serde_json::to_string(&serde_json::json!({
            "id": "d1", "tenant": "t", "endpoint_id": "ep", "event_id": "e", "event_type": "a.b",
            "body": "{}", "attempts": 1, "first_attempt_at": 1, "published_at": 1,
        }))
        .unwrap();
        assert_eq!(load(&inline, String::new()).unwrap().body, "{}");
        let s = Stored::of(&job("{}"));
        assert_eq!(load(&s.raw, String::new()), None, "its body is missing");
    }
}
