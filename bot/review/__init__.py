"""Review by reaction (``desk``) and the export of approved images (``export``)."""

from bot.review.desk import FollowUp, ReviewDesk, rerender_spec, thread_of
from bot.review.export import export_image, unexport

__all__ = ["FollowUp", "ReviewDesk", "export_image", "rerender_spec", "thread_of", "unexport"]
