"""Payment providers behind one port: the sandbox (development) and Stripe (the web)."""
