"""Our `constructs/` folder shares its name with the constructs library: both must resolve."""

from pathlib import Path

import constructs
from constructs import Construct

ROOT = Path(__file__).resolve().parent.parent


def test_construct_base_class_is_the_librarys():
    assert Construct.__module__.startswith("constructs"), Construct.__module__
    assert "site-packages" in constructs.__file__, f"constructs resolved to {constructs.__file__}"
    assert not (ROOT / "constructs" / "__init__.py").exists(), (
        "an __init__.py in constructs/ would shadow the library and break `import aws_cdk`"
    )


def test_our_construct_modules_resolve_to_our_folder():
    from constructs import llmft_data_store, llmft_network

    for module in (llmft_network, llmft_data_store):
        assert Path(module.__file__).parent == ROOT / "constructs", module.__file__


def test_our_module_names_cannot_shadow_the_librarys():
    library_dir = Path(constructs.__file__).parent
    ours = {path.stem for path in (ROOT / "constructs").glob("*.py")}
    library = {path.stem for path in library_dir.iterdir()}
    assert all(name.startswith("llmft_") for name in ours), sorted(ours)
    assert not ours & library, f"clashing module names: {sorted(ours & library)}"
