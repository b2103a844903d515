"""Mark prices for the whole platform: one minute-grain table (``mark_prices``), its access code
(``store``) and its loaders (``candles`` from candle files, ``fetch`` from the exchange gateway)."""
