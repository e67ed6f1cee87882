"""The inference core on Ray Serve (`engine.backend = "ray"`, the optional `tlm-bot[ray]` extra).

`cluster`: connecting to Ray and deploying one Serve application per model (`tlm-bot serve`).
`replica`: what runs on the cluster: the same registry loading and the same `Task.run_batch`.
`backend`: the bot's side: deployment states, and the lane runner that sends one call per batch.
"""
