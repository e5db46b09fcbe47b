//! Audit events (`tracing` target `learnhub::audit`): one per admin write and per cache
//! invalidation through the gateway, once the caller is known to be an admin (a refused caller
//! shows in the access log with its 401/403), saying who (the token's subject and role),
//! what (the action and the resource it acts on), when (UTC, RFC 3339), the outcome (`ok`, or the code the
//! caller got) and the request id, whatever the front end (REST or gRPC).
use chrono::{SecondsFormat, Utc};

use crate::{access, auth::Caller, error::Error};

/// The `tracing` target of audit events.
pub const TARGET: &str = "learnhub::audit";

/// Writes the audit event of `action` on `target` by `admin`, and hands `outcome` back.
pub fn record<T>(
    admin: &Caller,
    action: &'static str,
    target: &str,
    outcome: Result<T, Error>,
) -> Result<T, Error> {
    let (subject, role) = (admin.subject.as_str(), admin.role.to_string());
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let request_id = access::request_id();
    match &outcome {
        Ok(_) => tracing::info!(
            target: TARGET,
            action,
            resource = target,
            caller = subject,
            role,
            at,
            outcome = "ok",
            request_id,
            "audit"
        ),
        Err(err) => {
            let status = err.to_status();
            tracing::warn!(
                target: TARGET,
                action,
                resource = target,
                caller = subject,
                role,
                at,
                outcome = crate::error::code_name(status.code()),
                reason = status.message(),
                request_id,
                "audit"
            );
        }
    }
    outcome
}
