"""Benchmarks and the seed reproduction: experiments run through the service's own API."""
