"""Benchmarks live in each stage's `benchmarks/` subpackage, apart from the product: importing the product
modules (and the `faceid` command) loads none of them."""

import subprocess
import sys

PRODUCT = ["faceid.cli", "faceid.training", "faceid.training.trainer", "faceid.training.compare", "faceid.export",
           "faceid.export.onnx_export", "faceid.export.embed_files", "faceid.evaluation", "faceid.evaluation.runner",
           "faceid.gallery.gallery", "faceid.gallery.session", "faceid.gallery.service.app", "faceid.gallery.transfer"]


def test_the_product_loads_no_benchmark_module():
    code = (f"import sys\nfor name in {PRODUCT!r}:\n    __import__(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('faceid') and 'benchmark' in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
