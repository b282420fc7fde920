"""Task adapters: data, model assembly, loss, evaluation and a fit entry point per signal."""
