"""Sentences and font families that the page routes' tests draw: the families are held out of
every page route's training (configs/reader/page_reader.yaml, configs/pixel_text_fonts.yaml)."""

HELD_OUT_FONTS = [
    "/usr/share/fonts/opentype/ebgaramond/*.otf",
    "/usr/share/fonts/truetype/andika/*.ttf",
    "/usr/share/fonts/opentype/comic-neue/*.otf",
    "/usr/share/fonts/truetype/jetbrains-mono/*.ttf",
]
SENTENCES = [
    "The early bird catches the worm, but the second mouse gets the cheese.",
    "Never put off until tomorrow what you can do the day after tomorrow.",
    "A conference is a gathering of important people who singly can do nothing.",
    "The trouble with being punctual is that nobody is there to appreciate it.",
    "Rain is forecast for the weekend, so the picnic moves indoors.",
    "She planted tomatoes, beans and sunflowers along the garden fence.",
    "Invoice 4471 was paid on 12 March 2024 at 09:30 by card.",
    "Our train leaves platform 9 at a quarter past seven, weather permitting.",
]
