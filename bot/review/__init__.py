"""Review by reaction (``desk``) and the export of approved images (``export``)."""

from bot.review.desk import ReviewDesk, rerender_spec, thread_of
from bot.review.export import export_image, unexport

__all__ = ["ReviewDesk", "export_image", "rerender_spec", "thread_of", "unexport"]
