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
# Accented sentences written for the tests (no training text): French, German, Polish, Czech,
# Hungarian, Turkish, Danish, Spanish; Latin-1 and Latin Extended-A letters.
ACCENTED = [
    "Le garçon a mangé une crème brûlée à côté de l'hôpital.",
    "Die Straße war im Frühling voller grüner Bäume und süßer Düfte.",
    "Zażółć gęślą jaźń, powiedział łagodnie stróż przy bramie.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy na louce.",
    "Árvíztűrő tükörfúrógép és egy hűvös őszi délután.",
    "Güneşli bir günde çocuklar ağaçların altında şarkı söyledi.",
    "Øen ved kysten får besøg af både ænder og måger.",
    "El niño pidió un café con leche y una tostada en la estación.",
]
