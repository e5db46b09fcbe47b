//! enrollment-svc: built under issue 4.
