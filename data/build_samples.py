"""Build the small QA samples shipped in data/ (Search-R1 / ZeroSearch record schema).

Run from the repository root: `.venv/bin/python data/build_samples.py`. The questions and answers
below were written by hand for this project (short factual questions, unambiguous answers); the
script only puts them into the schema, splits them and writes JSONL and parquet copies.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (data_source, question, golden answers)
CAPITALS = {
    "France": ["Paris"], "Germany": ["Berlin"], "Italy": ["Rome"], "Spain": ["Madrid"], "Portugal": ["Lisbon"],
    "Japan": ["Tokyo"], "China": ["Beijing", "Peking"], "India": ["New Delhi"], "Canada": ["Ottawa"],
    "Australia": ["Canberra"], "Brazil": ["Brasilia", "Brasília"], "Argentina": ["Buenos Aires"],
    "Egypt": ["Cairo"], "Kenya": ["Nairobi"], "Russia": ["Moscow"], "Norway": ["Oslo"], "Sweden": ["Stockholm"],
    "Finland": ["Helsinki"], "Denmark": ["Copenhagen"], "Poland": ["Warsaw"], "Greece": ["Athens"],
    "Turkey": ["Ankara"], "Mexico": ["Mexico City"], "Peru": ["Lima"], "Chile": ["Santiago"],
    "Colombia": ["Bogota", "Bogotá"], "Ireland": ["Dublin"], "Austria": ["Vienna"], "Hungary": ["Budapest"],
    "the Czech Republic": ["Prague"], "Belgium": ["Brussels"], "the Netherlands": ["Amsterdam"],
    "Switzerland": ["Bern", "Berne"], "South Korea": ["Seoul"], "Thailand": ["Bangkok"], "Vietnam": ["Hanoi"],
    "Indonesia": ["Jakarta"], "the Philippines": ["Manila"], "Nigeria": ["Abuja"], "Ghana": ["Accra"],
    "Ethiopia": ["Addis Ababa"], "Morocco": ["Rabat"], "Iran": ["Tehran"], "Iraq": ["Baghdad"],
    "Saudi Arabia": ["Riyadh"], "Pakistan": ["Islamabad"], "New Zealand": ["Wellington"], "Cuba": ["Havana"],
    "Iceland": ["Reykjavik", "Reykjavík"], "Ukraine": ["Kyiv", "Kiev"], "Romania": ["Bucharest"],
    "Bulgaria": ["Sofia"], "Serbia": ["Belgrade"], "Croatia": ["Zagreb"], "Scotland": ["Edinburgh"],
    "Venezuela": ["Caracas"], "Mongolia": ["Ulaanbaatar", "Ulan Bator"], "Nepal": ["Kathmandu"],
}
AUTHORS = {
    "Pride and Prejudice": ["Jane Austen"], "1984": ["George Orwell"], "Hamlet": ["William Shakespeare"],
    "War and Peace": ["Leo Tolstoy"], "Moby-Dick": ["Herman Melville"], "The Odyssey": ["Homer"],
    "Don Quixote": ["Miguel de Cervantes", "Cervantes"], "Crime and Punishment": ["Fyodor Dostoevsky"],
    "The Great Gatsby": ["F. Scott Fitzgerald"], "To Kill a Mockingbird": ["Harper Lee"],
    "One Hundred Years of Solitude": ["Gabriel Garcia Marquez", "Gabriel García Márquez"],
    "The Divine Comedy": ["Dante Alighieri", "Dante"], "Frankenstein": ["Mary Shelley"],
    "Dracula": ["Bram Stoker"], "Jane Eyre": ["Charlotte Bronte", "Charlotte Brontë"],
    "Wuthering Heights": ["Emily Bronte", "Emily Brontë"], "The Hobbit": ["J. R. R. Tolkien", "Tolkien"],
    "Oliver Twist": ["Charles Dickens"], "Les Miserables": ["Victor Hugo"], "Madame Bovary": ["Gustave Flaubert"],
    "Ulysses": ["James Joyce"], "The Old Man and the Sea": ["Ernest Hemingway"], "Brave New World": ["Aldous Huxley"],
    "The Catcher in the Rye": ["J. D. Salinger"], "Anna Karenina": ["Leo Tolstoy"], "Faust": ["Goethe",
    "Johann Wolfgang von Goethe"], "The Trial": ["Franz Kafka"], "Lolita": ["Vladimir Nabokov"],
    "Beloved": ["Toni Morrison"], "The Little Prince": ["Antoine de Saint-Exupery", "Antoine de Saint-Exupéry"],
    "Alice's Adventures in Wonderland": ["Lewis Carroll"], "The Origin of Species": ["Charles Darwin"],
    "A Brief History of Time": ["Stephen Hawking"], "The Republic": ["Plato"], "The Art of War": ["Sun Tzu"],
    "Treasure Island": ["Robert Louis Stevenson"], "The Time Machine": ["H. G. Wells"],
    "Gulliver's Travels": ["Jonathan Swift"], "Robinson Crusoe": ["Daniel Defoe"], "Middlemarch": ["George Eliot"],
}
SYMBOLS = {
    "gold": ["Au"], "silver": ["Ag"], "iron": ["Fe"], "copper": ["Cu"], "sodium": ["Na"], "potassium": ["K"],
    "lead": ["Pb"], "mercury": ["Hg"], "tin": ["Sn"], "oxygen": ["O"], "hydrogen": ["H"], "carbon": ["C"],
    "nitrogen": ["N"], "helium": ["He"], "neon": ["Ne"], "calcium": ["Ca"], "zinc": ["Zn"], "uranium": ["U"],
    "tungsten": ["W"], "chlorine": ["Cl"], "sulfur": ["S"], "phosphorus": ["P"], "magnesium": ["Mg"],
    "aluminium": ["Al"], "silicon": ["Si"], "platinum": ["Pt"], "nickel": ["Ni"], "iodine": ["I"],
}
PAINTERS = {
    "the Mona Lisa": ["Leonardo da Vinci", "Leonardo"], "The Starry Night": ["Vincent van Gogh", "Van Gogh"],
    "Guernica": ["Pablo Picasso", "Picasso"], "The Persistence of Memory": ["Salvador Dali", "Dalí"],
    "The Scream": ["Edvard Munch"], "Girl with a Pearl Earring": ["Johannes Vermeer", "Vermeer"],
    "The Night Watch": ["Rembrandt"], "The Birth of Venus": ["Sandro Botticelli", "Botticelli"],
    "The Last Supper": ["Leonardo da Vinci", "Leonardo"], "Water Lilies": ["Claude Monet", "Monet"],
    "The Creation of Adam": ["Michelangelo"], "American Gothic": ["Grant Wood"],
    "The Garden of Earthly Delights": ["Hieronymus Bosch"], "Las Meninas": ["Diego Velazquez", "Velázquez"],
    "The Kiss": ["Gustav Klimt"], "Impression, Sunrise": ["Claude Monet", "Monet"],
}
INVENTIONS = {
    "the telephone": ["Alexander Graham Bell"], "the light bulb": ["Thomas Edison"],
    "the World Wide Web": ["Tim Berners-Lee"], "dynamite": ["Alfred Nobel"],
    "the printing press": ["Johannes Gutenberg", "Gutenberg"], "the theory of general relativity":
    ["Albert Einstein", "Einstein"], "penicillin": ["Alexander Fleming"], "the polio vaccine": ["Jonas Salk"],
    "the steam engine improvements of 1769": ["James Watt"], "the periodic table": ["Dmitri Mendeleev"],
    "the laws of motion": ["Isaac Newton"], "radioactivity research that won two Nobel prizes": ["Marie Curie"],
    "the first successful airplane": ["Wright brothers", "the Wright brothers"], "the telegraph code": ["Samuel Morse"],
    "the alternating current induction motor": ["Nikola Tesla"], "the smallpox vaccine": ["Edward Jenner"],
}
CURRENCIES = {
    "Japan": ["yen"], "the United Kingdom": ["pound sterling", "pound"], "India": ["rupee", "Indian rupee"],
    "Russia": ["ruble", "rouble"], "China": ["renminbi", "yuan"], "Mexico": ["peso", "Mexican peso"],
    "Switzerland": ["Swiss franc", "franc"], "South Africa": ["rand"], "Brazil": ["real", "Brazilian real"],
    "South Korea": ["won"], "Poland": ["zloty", "złoty"], "Sweden": ["krona", "Swedish krona"],
    "Turkey": ["lira", "Turkish lira"], "Thailand": ["baht"], "Israel": ["shekel", "new shekel"],
    "Vietnam": ["dong"],
}
LANDMARKS = {
    "the Eiffel Tower": ["France"], "the Colosseum": ["Italy"], "the Great Wall": ["China"],
    "Machu Picchu": ["Peru"], "the Taj Mahal": ["India"], "the Acropolis": ["Greece"], "Petra": ["Jordan"],
    "Angkor Wat": ["Cambodia"], "the Sagrada Familia": ["Spain"], "Stonehenge": ["England", "United Kingdom"],
    "the Statue of Liberty": ["United States", "USA"], "Christ the Redeemer": ["Brazil"],
    "the Sydney Opera House": ["Australia"], "Chichen Itza": ["Mexico"], "the Kremlin": ["Russia"],
    "Neuschwanstein Castle": ["Germany"], "the Alhambra": ["Spain"], "Mount Kilimanjaro": ["Tanzania"],
    "Mount Fuji": ["Japan"], "the Burj Khalifa": ["United Arab Emirates", "UAE"], "the Leaning Tower of Pisa":
    ["Italy"], "the Little Mermaid statue": ["Denmark"], "the Atomium": ["Belgium"], "Table Mountain":
    ["South Africa"], "the Parthenon": ["Greece"], "the CN Tower": ["Canada"], "Uluru": ["Australia"],
    "the Blue Mosque": ["Turkey"], "Victoria Falls": ["Zambia", "Zimbabwe"], "the Matterhorn": ["Switzerland",
    "Italy"], "Schonbrunn Palace": ["Austria"], "the Pyramids of Giza": ["Egypt"],
}
LANGUAGES = {
    "Brazil": ["Portuguese"], "Argentina": ["Spanish"], "Egypt": ["Arabic"], "Iran": ["Persian", "Farsi"],
    "Japan": ["Japanese"], "Germany": ["German"], "the Netherlands": ["Dutch"], "Greece": ["Greek"],
    "Hungary": ["Hungarian"], "Finland": ["Finnish", "Swedish"], "Poland": ["Polish"], "Turkey": ["Turkish"],
    "Israel": ["Hebrew"], "Thailand": ["Thai"], "Vietnam": ["Vietnamese"], "Indonesia": ["Indonesian"],
    "Kenya": ["Swahili", "English"], "Ethiopia": ["Amharic"], "Sweden": ["Swedish"], "Norway": ["Norwegian"],
    "Denmark": ["Danish"], "Portugal": ["Portuguese"], "Mexico": ["Spanish"], "Russia": ["Russian"],
    "South Korea": ["Korean"], "Pakistan": ["Urdu", "English"], "Bangladesh": ["Bengali", "Bangla"],
    "Mongolia": ["Mongolian"], "Georgia (the country)": ["Georgian"], "Armenia": ["Armenian"],
}
MISC = [
    ("What is the largest planet in the solar system?", ["Jupiter"]),
    ("What is the smallest planet in the solar system?", ["Mercury"]),
    ("Which planet is known as the Red Planet?", ["Mars"]),
    ("What is the largest ocean on Earth?", ["Pacific Ocean", "Pacific"]),
    ("What is the longest river in Africa?", ["Nile", "the Nile"]),
    ("What is the tallest mountain in the world?", ["Mount Everest", "Everest"]),
    ("What is the largest desert in Africa?", ["Sahara", "Sahara Desert"]),
    ("How many continents are there?", ["seven", "7"]),
    ("What is the boiling point of water in degrees Celsius at sea level?", ["100", "100 degrees"]),
    ("What gas do plants absorb from the air for photosynthesis?", ["carbon dioxide", "CO2"]),
    ("What is the hardest natural mineral?", ["diamond"]),
    ("How many legs does a spider have?", ["eight", "8"]),
    ("What is the largest mammal?", ["blue whale"]),
    ("What is the fastest land animal?", ["cheetah"]),
    ("In which year did World War II end?", ["1945"]),
    ("In which year did humans first land on the Moon?", ["1969"]),
    ("Who was the first person to walk on the Moon?", ["Neil Armstrong"]),
    ("Who was the first President of the United States?", ["George Washington"]),
    ("In which year did the Berlin Wall fall?", ["1989"]),
    ("Which ship sank in 1912 after hitting an iceberg?", ["Titanic", "RMS Titanic"]),
    ("What is the largest country by area?", ["Russia"]),
    ("What is the most spoken native language in the world?", ["Mandarin Chinese", "Mandarin"]),
    ("Which organ pumps blood through the human body?", ["heart"]),
    ("How many bones are in the adult human body?", ["206"]),
    ("What is the chemical formula of water?", ["H2O"]),
    ("Who composed the Fifth Symphony that opens with four famous notes?", ["Ludwig van Beethoven", "Beethoven"]),
    ("Who composed The Magic Flute?", ["Wolfgang Amadeus Mozart", "Mozart"]),
    ("Which city hosted the 2012 Summer Olympics?", ["London"]),
    ("Which country is home to the kangaroo?", ["Australia"]),
    ("What is the freezing point of water in degrees Fahrenheit?", ["32", "32 degrees"]),
    ("Which element has atomic number 1?", ["hydrogen"]),
    ("Which instrument has 88 keys?", ["piano"]),
    ("What is the square root of 144?", ["12", "twelve"]),
    ("Which language is spoken in Brazil?", ["Portuguese"]),
    ("Who painted the ceiling of the Sistine Chapel?", ["Michelangelo"]),
    ("Which country gifted the Statue of Liberty to the United States?", ["France"]),
    ("What is the currency of the European Union's eurozone?", ["euro"]),
    ("What is the capital city of the US state of California?", ["Sacramento"]),
    ("Which sea separates Europe and Africa?", ["Mediterranean Sea", "Mediterranean"]),
    ("What is the largest island in the world?", ["Greenland"]),
]


def questions() -> list[tuple[str, str, list[str]]]:
    items: list[tuple[str, str, list[str]]] = []
    items += [("sample_capitals", f"What is the capital of {c}?", a) for c, a in CAPITALS.items()]
    items += [("sample_books", f"Who wrote {b}?", a) for b, a in AUTHORS.items()]
    items += [("sample_elements", f"What is the chemical symbol for {e}?", a) for e, a in SYMBOLS.items()]
    items += [("sample_art", f"Who painted {p}?", a) for p, a in PAINTERS.items()]
    items += [("sample_inventions", f"Who is credited with {i}?", a) for i, a in INVENTIONS.items()]
    items += [("sample_currencies", f"What is the currency of {c}?", a) for c, a in CURRENCIES.items()]
    items += [("sample_landmarks", f"In which country is {name}?", a) for name, a in LANDMARKS.items()]
    items += [("sample_languages", f"What is the official language of {c}?", a) for c, a in LANGUAGES.items()]
    items += [("sample_general", q, a) for q, a in MISC]
    return items


def record(data_source: str, question: str, answers: list[str], split: str, index: int) -> dict:
    from zerosearch_trainer.data import paper_prompt

    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": paper_prompt(question)}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": list(answers)}},
        "extra_info": {"split": split, "index": index},
        "question": question,
        "golden_answers": list(answers),
    }


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = questions()
    random.Random(0).shuffle(items)
    n_test = 40
    splits = {"test": items[:n_test], "train": items[n_test:]}
    for split, rows in splits.items():
        records = [record(src, q, a, split, i) for i, (src, q, a) in enumerate(rows)]
        with (HERE / f"sample_{split}.jsonl").open("w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        pq.write_table(pa.Table.from_pylist(records), HERE / f"sample_{split}.parquet")
    with (HERE / "sample_plain.jsonl").open("w") as f:
        for _src, q, a in splits["test"][:20]:
            f.write(json.dumps({"question": q, "golden_answers": a}, ensure_ascii=False) + "\n")
    sys.stdout.write(f"{ {k: len(v) for k, v in splits.items()} }\n")


if __name__ == "__main__":
    main()
