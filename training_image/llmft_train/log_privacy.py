"""Dataset text stays out of the job log (CloudWatch): LLaMA-Factory prints the first tokenized example,
decoded, and its converter warns with whole rows; here both say what they would have, without the text."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

WITHHELD = "text withheld: dataset rows stay out of job logs"
# The converter's row warnings: "Invalid role tag in [...]", "Invalid message count in [...]".
CONVERTER_LOGGER = "llamafactory.data.converter"
ROW_IN_MESSAGE = re.compile(r"^(?P<what>.+?) in [\[{(].*$", re.DOTALL)


def example_summary(example: Mapping[str, Sequence[int]]) -> str:
    """What the first example is, in token counts: 'input_ids: 57 tokens, labels: 12 trained'."""
    parts = []
    for name, ids in example.items():
        if name.endswith("input_ids"):
            parts.append(f"{name}: {len(ids)} tokens")
        elif name.endswith("labels"):
            # -100 marks prompt tokens the loss ignores (IGNORE_INDEX in LLaMA-Factory).
            parts.append(f"{name}: {sum(1 for token in ids if token != -100)} trained")
    return f"{', '.join(parts) or 'no token ids'} ({WITHHELD})"


def redact_row(message: str) -> str:
    """A converter warning with the row cut off: 'Invalid role tag in a dataset row (text withheld...)'."""
    match = ROW_IN_MESSAGE.match(message)
    return f"{match['what']} in a dataset row ({WITHHELD})." if match else message


class _WithholdRows(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_row(record.getMessage()), ()
        return True


def _print_summary(self, example: Mapping[str, Sequence[int]]) -> None:
    print(example_summary(example), flush=True)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def withhold_dataset_text() -> None:
    """Patch every LLaMA-Factory dataset processor's example print, and filter the converter's warnings."""
    import llamafactory.data.processor  # noqa: F401  (defines every processor class)
    from llamafactory.data.processor.processor_utils import DatasetProcessor

    for processor in _subclasses(DatasetProcessor):
        if "print_data_example" in vars(processor):
            processor.print_data_example = _print_summary
    converter = logging.getLogger(CONVERTER_LOGGER)
    if not any(isinstance(f, _WithholdRows) for f in converter.filters):
        converter.addFilter(_WithholdRows())
