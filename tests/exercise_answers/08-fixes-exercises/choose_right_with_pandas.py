# cell: choose_fix
# expect: right
# concept: the six rules as one boolean mask over the table, then a stable sort on the two costs
def choose_fix(workload, measurements=MEASURED):
    m = measurements
    fits = m[(m["added_p50_ms"] <= workload["max_added_ms"])
             & (~m["needs_balancer_change"] | workload["can_change_balancer"])
             & (~m["needs_push_tier"] | workload["can_run_push_tier"])
             & (m["replays_missed_events"] | (not workload["must_replay"]))
             & (~m["breaks_when_servers_change"] | (not workload["servers_change_often"]))
             & (m["idle_redis_per_channel_per_s"] * workload["waiting_browsers"] <= workload["redis_budget_per_s"])]
    if fits.empty:
        return None
    ranked = fits.sort_values(["added_redis_per_login", "messages_per_login"], kind="stable")
    return ranked["fix"].iloc[0]
