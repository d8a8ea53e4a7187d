"""Real market data into the landing folder: Tushare Pro and AkShare adapters, and the
private-fund NAV CSV splitter (``sc-assets pull``). Vendor SDKs are optional extras,
imported only when a real client is used."""
