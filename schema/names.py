"""strawberry's name converter, memoised.

strawberry converts argument names to camelCase on every resolver call that has arguments
(`convert_arguments`); the names are a fixed, small set, so each is converted once.
"""

from __future__ import annotations

from functools import lru_cache

from strawberry.schema.name_converter import NameConverter


class CachedNameConverter(NameConverter):
    def __init__(self, auto_camel_case: bool = True) -> None:
        super().__init__(auto_camel_case)
        self._convert = lru_cache(maxsize=4096)(super().apply_naming_config)

    def apply_naming_config(self, name: str) -> str:
        return self._convert(name)
