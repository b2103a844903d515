"""Operating the platform locally: the `copytrade up` / `down` stack."""
