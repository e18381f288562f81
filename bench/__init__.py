"""Load tools for measuring bff (see docs/benchmarks.md). Not part of the installed package."""
