"""`factory prepare`: tokenise and pack a request's data without training, and report the numbers.

The data stage writes its cache into the run folder, so a later `factory run` of the same request
starts from it.
"""

from __future__ import annotations

import time

from factory.request.config import Request


def pairs_report(request: Request, run, data_summary: dict, data_seconds: float) -> dict:
    """A preference run's data: pairs (or KTO completions), their tokens, and the steps they make."""
    from factory.run.pair_stages import load_pairs_file

    _, train, held = load_pairs_file(run)
    groups = -(-len(train) // request.micro_batch_size)
    tokens = sum(len(t.prompt) * (1 if t.rejected is None else 2) + len(t.chosen) + len(t.rejected or [])
                 for t in train)
    return {"rows_read": data_summary["rows"], "malformed": data_summary["malformed"],
            "duplicates": data_summary["duplicates"], "same_answer_pairs": data_summary["same_answer_pairs"],
            "dropped_over_long": data_summary["dropped"], "unit": data_summary["unit"], "train_samples": len(train),
            "held_out_pairs": len(held), "real_tokens": tokens, "sequence_len": request.sequence_len,
            "steps_per_epoch": -(-groups // request.gradient_accumulation_steps), "seconds_data": round(data_seconds, 3),
            "contamination": data_summary.get("contamination"), "rl": request.rl}


def packing_report(request: Request, run, data_summary: dict, data_seconds: float) -> dict:
    """The packing of the run's samples, from their lengths alone (the tokens stay on disk)."""
    if request.rl:
        return pairs_report(request, run, data_summary, data_seconds)
    from factory.data import encoded_store
    from factory.train.packing import pack_lengths

    _, entry, cut, train_rows, eval_rows = encoded_store.load_selection(run.dir / "data" / "encoded")
    t0 = time.time()
    per_step = request.micro_batch_size * request.gradient_accumulation_steps
    lengths = cut[train_rows].tolist()
    real = sum(lengths)
    if request.sample_packing:
        packed = pack_lengths(lengths, request.sequence_len, request.seed, request.sample_packing_sequentially)
        rows, slots, efficiency = len(packed.bins), len(packed.bins) * request.sequence_len, packed.efficiency
    else:  # padded to the longest sample of each micro-batch, in the seeded order training uses (epoch 1)
        from factory.train.train import epoch_order

        lengths = [lengths[i] for i in epoch_order(len(lengths), 1, None, request.seed)]
        rows = len(lengths)
        slots = sum(max(lengths[i:i + request.micro_batch_size]) * len(lengths[i:i + request.micro_batch_size])
                    for i in range(0, len(lengths), request.micro_batch_size))
        efficiency = real / slots if slots else 0.0
    pack_seconds = time.time() - t0
    return {
        "rows_read": data_summary["rows"], "malformed": data_summary["malformed"],
        "duplicates": data_summary["duplicates"], "dropped_over_long": data_summary["dropped"],
        "truncated": data_summary["truncated"], "train_samples": len(train_rows), "eval_samples": len(eval_rows),
        "real_tokens": real, "target_tokens": int(entry.trained_counts(cut)[train_rows].sum()),
        "packing": request.sample_packing, "sequence_len": request.sequence_len,
        "rows": rows, "slots": slots, "efficiency": round(efficiency, 6),
        "steps_per_epoch": -(-rows // per_step), "seconds_data": round(data_seconds, 3),
        "seconds_packing": round(pack_seconds, 3), "contamination": data_summary.get("contamination"),
        "tokenising": data_summary.get("encoding"),
    }


def print_report(r: dict, out) -> None:
    if r.get("rl"):
        print(f"rows read          {r['rows_read']:,} ({r['malformed']} malformed, {r['duplicates']} duplicates, "
              f"{r['same_answer_pairs']} with chosen = rejected)", file=out)
        print(f"{r['unit']:18} {r['train_samples']:,} train, {r['held_out_pairs']:,} held-out pairs "
              f"({r['dropped_over_long']} longer than sequence_len {r['sequence_len']} dropped)", file=out)
        print(f"real tokens        {r['real_tokens']:,} (both sequences of every {r['rl']} example, one packed row "
              "per micro-batch, no padding)", file=out)
        print(f"steps per epoch    {r['steps_per_epoch']:,}", file=out)
        print(f"time               data {r['seconds_data']:.2f}s", file=out)
        return
    print(f"rows read          {r['rows_read']:,} ({r['malformed']} malformed, {r['duplicates']} duplicates)", file=out)
    print(f"samples            {r['train_samples']:,} train, {r['eval_samples']:,} eval "
          f"({r['dropped_over_long']} over-long dropped, {r['truncated']} truncated)", file=out)
    print(f"real tokens        {r['real_tokens']:,} ({r['target_tokens']:,} trained on)", file=out)
    what = "packed rows" if r["packing"] else "padded rows"
    print(f"{what:18} {r['rows']:,} of {r['sequence_len']} tokens max, {r['slots']:,} token slots", file=out)
    print(f"efficiency         {r['efficiency']:.2%} of slots hold real tokens", file=out)
    print(f"steps per epoch    {r['steps_per_epoch']:,}", file=out)
    print(f"time               data {r['seconds_data']:.2f}s, packing {r['seconds_packing']:.3f}s", file=out)
    tok = r.get("tokenising") or {}
    if tok.get("cache") == "hit":
        print(f"tokenising         cache hit ({tok['key'][:12]}): nothing was tokenised again", file=out)
    elif tok:
        print(f"tokenising         cache miss ({tok['key'][:12]}): {tok['seconds']:.2f}s on {tok['processes']} "
              f"process(es), {tok['prefix_rows']} rows by prefix rendering", file=out)
