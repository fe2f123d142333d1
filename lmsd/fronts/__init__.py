"""Fronts: the HTTP apps clients talk to, each speaking its client's API (Anthropic
Messages today); they parse a request, hand the turn to the exchange and stream it back."""
