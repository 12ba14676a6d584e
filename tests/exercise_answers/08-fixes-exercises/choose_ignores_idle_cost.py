# cell: choose_fix
# expect: wrong
# question: choose_fix_tests
# concept: counts Redis commands per login only, not what waiting browsers cost while nothing happens
def choose_fix(workload, measurements=MEASURED):
    fits = []
    for position, row in enumerate(measurements.itertuples(index=False)):
        if row.added_p50_ms > workload["max_added_ms"]:
            continue
        if row.needs_balancer_change and not workload["can_change_balancer"]:
            continue
        if row.needs_push_tier and not workload["can_run_push_tier"]:
            continue
        if workload["must_replay"] and not row.replays_missed_events:
            continue
        if row.breaks_when_servers_change and workload["servers_change_often"]:
            continue
        fits.append((row.added_redis_per_login, row.messages_per_login, position, row.fix))
    return min(fits)[3] if fits else None
