"""Payment providers behind ports: the sandbox (development) and Stripe (the web) for cards,
the App Store and Google Play for the mobile apps (``port.StoreProvider``)."""
