"""The paper exchange: a local server speaking Binance\x27s spot and USDⓈ-M API (see docs/paper-exchange.md)."""
