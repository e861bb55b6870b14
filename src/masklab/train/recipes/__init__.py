"""Every module in this package is a recipe file; importing the package registers them all in :data:`RECIPE`
(the registry of kind "recipe": entries ``() -> Recipe``)."""

import importlib
import pkgutil

from masklab.train.recipes.base import RECIPES, Recipe, TextRecipe, get_recipe, register, resolve_recipe

RECIPE = RECIPES

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["RECIPE", "RECIPES", "Recipe", "TextRecipe", "get_recipe", "register", "resolve_recipe"]
