//! The `learnhub_db_pool_*` metrics of one pool, from bb8's state and statistics.
//!
//! bb8 keeps its statistics as running totals, so the counters are set to them (`absolute`)
//! rather than incremented. `learnhub_db_pool_wait_seconds_total` is a gauge holding that total:
//! the `metrics` facade's counters are integers, and a total of seconds needs fractions; it
//! only grows while the pool lives, so `rate()` reads it as it would a counter.

pub(crate) fn record(service: &'static str, max_connections: u32, state: &bb8::State) {
    let in_use = state.connections.saturating_sub(state.idle_connections);
    metrics::gauge!("learnhub_db_pool_connections", "service" => service, "state" => "idle")
        .set(f64::from(state.idle_connections));
    metrics::gauge!("learnhub_db_pool_connections", "service" => service, "state" => "in_use")
        .set(f64::from(in_use));
    metrics::gauge!("learnhub_db_pool_max_connections", "service" => service)
        .set(f64::from(max_connections));
    let statistics = &state.statistics;
    metrics::counter!("learnhub_db_pool_waits_total", "service" => service)
        .absolute(statistics.get_waited + statistics.get_timed_out);
    metrics::gauge!("learnhub_db_pool_wait_seconds_total", "service" => service)
        .set(statistics.get_wait_time.as_secs_f64());
}
