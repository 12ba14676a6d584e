# cell: choose_fix
# expect: wrong
# question: choose_fix_rank_tests
# concept: breaks a tie in Redis commands by list order alone, skipping the messages per login
def choose_fix(workload, measurements=MEASURED):
    best = None
    for row in measurements.itertuples(index=False):
        fits = (row.added_p50_ms <= workload["max_added_ms"]
                and (workload["can_change_balancer"] or not row.needs_balancer_change)
                and (workload["can_run_push_tier"] or not row.needs_push_tier)
                and (row.replays_missed_events or not workload["must_replay"])
                and not (row.breaks_when_servers_change and workload["servers_change_often"])
                and row.idle_redis_per_channel_per_s * workload["waiting_browsers"] <= workload["redis_budget_per_s"])
        if fits and (best is None or row.added_redis_per_login < best.added_redis_per_login):
            best = row
    return None if best is None else best.fix
