"""The reliability suites (crashes, kills, stops, slow clients, logging, start failures), quick."""
