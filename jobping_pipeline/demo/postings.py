"""Deterministic generator of realistic, invented job-board postings.

The generator produces :class:`DemoJob` records that look like postings on a
European job board: varied titles (seniority x role x specialisation), invented
company names, European cities, 1-3 categories consistent with the role and
multi-paragraph descriptions between 50 and 600 words.

To exercise downstream cleaning and de-duplication, the stream also contains a
small share of edge cases:

* about 1% of jobs are exact copies of an earlier job in the stream,
* about 1% have an empty (``""``) description,
* about 1% have no description (``None``).

Output depends only on ``count``, ``seed`` and ``now``; it uses the standard
library only and picks whole sentences from pools (no per-word random calls),
so it generates roughly 100,000 jobs in a few seconds on one core.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from math import gcd

__all__ = ["DemoJob", "generate_jobs"]


@dataclass(frozen=True)
class DemoJob:
    """One invented job posting."""

    title: str
    company: str
    location: str
    categories: list[str]
    description: str | None
    is_active: bool
    created_at: datetime


DEFAULT_NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
"""Reference date used when ``generate_jobs`` is called without ``now``."""

MIN_WORDS = 50
MAX_WORDS = 600
SPREAD_DAYS = 180

_DUPLICATE_RATE = 0.01
_EMPTY_RATE = 0.01
_NONE_RATE = 0.01
_ACTIVE_RATE = 0.90
_REMOTE_RATE = 0.06
_HISTORY_SIZE = 1000

# --------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------

REMOTE_LOCATION = "Remote (EU)"

_CITIES: tuple[tuple[str, str], ...] = (
    ("Berlin", "Germany"), ("Munich", "Germany"), ("Hamburg", "Germany"),
    ("Frankfurt am Main", "Germany"), ("Cologne", "Germany"), ("Stuttgart", "Germany"),
    ("Leipzig", "Germany"), ("Düsseldorf", "Germany"),
    ("Vienna", "Austria"), ("Graz", "Austria"),
    ("Zurich", "Switzerland"), ("Geneva", "Switzerland"), ("Basel", "Switzerland"),
    ("Amsterdam", "Netherlands"), ("Rotterdam", "Netherlands"), ("Utrecht", "Netherlands"),
    ("Eindhoven", "Netherlands"),
    ("Brussels", "Belgium"), ("Antwerp", "Belgium"), ("Ghent", "Belgium"),
    ("Luxembourg", "Luxembourg"),
    ("Paris", "France"), ("Lyon", "France"), ("Toulouse", "France"), ("Bordeaux", "France"),
    ("Lille", "France"), ("Nantes", "France"),
    ("Madrid", "Spain"), ("Barcelona", "Spain"), ("Valencia", "Spain"), ("Seville", "Spain"),
    ("Lisbon", "Portugal"), ("Porto", "Portugal"),
    ("Milan", "Italy"), ("Rome", "Italy"), ("Turin", "Italy"), ("Bologna", "Italy"),
    ("Dublin", "Ireland"), ("Cork", "Ireland"),
    ("London", "United Kingdom"), ("Manchester", "United Kingdom"),
    ("Edinburgh", "United Kingdom"),
    ("Copenhagen", "Denmark"), ("Aarhus", "Denmark"),
    ("Stockholm", "Sweden"), ("Gothenburg", "Sweden"), ("Malmö", "Sweden"),
    ("Oslo", "Norway"), ("Bergen", "Norway"),
    ("Helsinki", "Finland"), ("Tampere", "Finland"),
    ("Warsaw", "Poland"), ("Kraków", "Poland"), ("Wrocław", "Poland"), ("Gdańsk", "Poland"),
    ("Prague", "Czech Republic"), ("Brno", "Czech Republic"),
    ("Budapest", "Hungary"), ("Bucharest", "Romania"), ("Cluj-Napoca", "Romania"),
    ("Athens", "Greece"), ("Tallinn", "Estonia"), ("Riga", "Latvia"), ("Vilnius", "Lithuania"),
    ("Zagreb", "Croatia"), ("Ljubljana", "Slovenia"),
)

_LEGAL_FORMS: dict[str, tuple[str, ...]] = {
    "Germany": ("GmbH", "GmbH", "AG", "SE", "GmbH & Co. KG"),
    "Austria": ("GmbH", "AG"),
    "Switzerland": ("AG", "SA", "GmbH"),
    "Netherlands": ("B.V.", "B.V.", "N.V."),
    "Belgium": ("NV", "BV", "SRL"),
    "Luxembourg": ("S.à r.l.", "S.A."),
    "France": ("SAS", "SA", "SARL"),
    "Spain": ("S.L.", "S.A."),
    "Portugal": ("Lda.", "S.A."),
    "Italy": ("S.p.A.", "S.r.l."),
    "Ireland": ("Ltd", "DAC"),
    "United Kingdom": ("Ltd", "Ltd", "PLC"),
    "Denmark": ("ApS", "A/S"),
    "Sweden": ("AB",),
    "Norway": ("AS", "ASA"),
    "Finland": ("Oy", "Oyj"),
    "Poland": ("sp. z o.o.", "S.A."),
    "Czech Republic": ("s.r.o.", "a.s."),
    "Hungary": ("Kft.", "Zrt."),
    "Romania": ("S.R.L.", "S.A."),
    "Greece": ("S.A.", "IKE"),
    "Estonia": ("OÜ", "AS"),
    "Latvia": ("SIA",),
    "Lithuania": ("UAB",),
    "Croatia": ("d.o.o.",),
    "Slovenia": ("d.o.o.",),
    "": ("GmbH", "B.V.", "Ltd", "AB", "SAS", "Oy"),  # remote postings
}

_GERMAN = frozenset({"Germany", "Austria", "Switzerland"})
_FRENCH = frozenset({"France", "Belgium", "Luxembourg"})

# --------------------------------------------------------------------------
# Roles and categories
# --------------------------------------------------------------------------

_CATEGORY_TRACK: dict[str, str] = {
    "Engineering": "tech", "Data": "tech", "Product": "pro", "Design": "pro",
    "Marketing": "pro", "Sales": "pro", "Finance": "pro", "Healthcare": "skilled",
    "Logistics": "skilled", "Hospitality": "skilled", "Education": "skilled",
    "Human Resources": "pro", "Customer Service": "pro", "Legal": "pro",
    "Construction": "skilled",
}

_CATEGORY_AREA: dict[str, str] = {
    "Engineering": "Software Development", "Data": "Data & Analytics",
    "Product": "Product Management", "Design": "UX Design", "Marketing": "Marketing",
    "Sales": "Sales", "Finance": "Finance", "Healthcare": "Healthcare",
    "Logistics": "Supply Chain", "Hospitality": "Hotel Management",
    "Education": "Education", "Human Resources": "Human Resources",
    "Customer Service": "Customer Success", "Legal": "Legal & Compliance",
    "Construction": "Construction Management",
}

_CATEGORY_SECTORS: dict[str, tuple[str, ...]] = {
    "Engineering": ("Software", "Systems", "Technologies", "Labs", "Digital", "Cloud"),
    "Data": ("Analytics", "Data", "Insights", "AI", "Labs"),
    "Product": ("Digital", "Apps", "Software", "Mobility"),
    "Design": ("Studio", "Design", "Digital", "Media"),
    "Marketing": ("Media", "Brands", "Commerce", "Retail"),
    "Sales": ("Solutions", "Commerce", "Trading", "Industries"),
    "Finance": ("Capital", "Finance", "Bank", "Insurance", "Partners"),
    "Healthcare": ("Health", "Care", "Kliniken", "Pharma", "Medical"),
    "Logistics": ("Logistics", "Freight", "Transport", "Distribution"),
    "Hospitality": ("Hotels", "Hospitality", "Resorts", "Gastro", "Foods"),
    "Education": ("Learning", "Academy", "Schools", "Education"),
    "Human Resources": ("People", "Staffing", "Consulting", "Partners"),
    "Customer Service": ("Services", "Telecom", "Connect", "Energy"),
    "Legal": ("Legal", "Law", "Compliance", "Partners"),
    "Construction": ("Bau", "Construction", "Engineering", "Infrastructure", "Energy"),
}

_GENERIC_SECTORS: tuple[str, ...] = (
    "Group", "Industries", "Solutions", "Holding", "Energy", "Mobility", "Retail",
    "Robotics", "Foods", "Consulting", "Technologies", "Services",
)

_COMPANY_STEMS: tuple[str, ...] = (
    "Nordlicht", "Vega", "Alpen", "Blauwal", "Lumen", "Kestrel", "Aurora", "Solaris",
    "Helix", "Brightwater", "Eichenwald", "Polar", "Meridian", "Orbit", "Atlas", "Fjord",
    "Rhein", "Danube", "Baltic", "Quartz", "Cobalt", "Ember", "Falke", "Lynx", "Iris",
    "Nova", "Sirius", "Tern", "Wolke", "Zephyr", "Kairos", "Marigold", "Oakridge",
    "Pioneer", "Riverstone", "Saffron", "Tessel", "Umbra", "Vireo", "Willow", "Ardent",
    "Beacon", "Cedar", "Elbe", "Granit", "Hafen", "Isar", "Juniper", "Keystone",
    "Lagune", "Mistral", "Nebula", "Olive", "Pinnacle", "Rosmarin", "Sable", "Tundra",
    "Vesta", "Wellen", "Zenit", "Azur", "Birke", "Corvus", "Dune", "Estuar", "Flint",
)


@dataclass(frozen=True)
class _Role:
    name: str
    category: str
    related: tuple[str, ...]
    specs: tuple[str, ...]
    track: str


def _roles() -> tuple[_Role, ...]:
    # (name, category, related categories, specialisations, track override)
    raw: list[tuple[str, str, tuple[str, ...], tuple[str, ...], str | None]] = [
        # Engineering
        ("Backend Engineer", "Engineering", ("Data",),
         ("Python", "Java", "Go", "Kotlin", "Node.js", "Rust", ".NET", "PHP"), None),
        ("Frontend Engineer", "Engineering", ("Design", "Product"),
         ("React", "Vue.js", "Angular", "TypeScript"), None),
        ("Full Stack Developer", "Engineering", ("Product",),
         ("React/Node.js", "Django", "Ruby on Rails", "Laravel"), None),
        ("DevOps Engineer", "Engineering", (), ("Kubernetes", "AWS", "Azure", "GCP"), None),
        ("Site Reliability Engineer", "Engineering", (), ("Kubernetes", "Observability"), None),
        ("Mobile Developer", "Engineering", ("Product", "Design"),
         ("iOS", "Android", "Flutter", "React Native"), None),
        ("Embedded Software Engineer", "Engineering", ("Construction",),
         ("C/C++", "Automotive", "IoT"), None),
        ("QA Engineer", "Engineering", ("Product",), ("Test Automation", "Manual Testing"), None),
        ("Security Engineer", "Engineering", ("Legal",), ("AppSec", "Cloud Security"), None),
        ("Cloud Architect", "Engineering", (), ("AWS", "Azure", "GCP"), None),
        ("Software Engineer", "Engineering", (),
         ("Python", "Java", "C#", "Go", "Scala", "Platform", "Payments"), None),
        # Data
        ("Data Analyst", "Data", ("Marketing", "Finance"),
         ("SQL", "Power BI", "Tableau", "Marketing Analytics"), None),
        ("Data Scientist", "Data", ("Engineering",),
         ("NLP", "Computer Vision", "Forecasting", "Pricing", "Recommendation Systems"), None),
        ("Data Engineer", "Data", ("Engineering",), ("Spark", "dbt", "Airflow", "Kafka"), None),
        ("Machine Learning Engineer", "Data", ("Engineering",),
         ("MLOps", "LLMs", "Search & Ranking"), None),
        ("BI Developer", "Data", ("Finance",), ("Power BI", "Qlik", "Looker"), None),
        ("Analytics Engineer", "Data", ("Engineering",), ("dbt", "Snowflake", "BigQuery"), None),
        # Product
        ("Product Manager", "Product", ("Engineering", "Design"),
         ("Growth", "Payments", "Platform", "B2B SaaS"), None),
        ("Product Owner", "Product", ("Engineering",), ("E-Commerce", "Mobile App"), None),
        ("Scrum Master", "Product", ("Engineering",), (), None),
        ("Technical Program Manager", "Product", ("Engineering",), (), None),
        # Design
        ("UX Designer", "Design", ("Product",), ("Mobile", "E-Commerce", "Design Systems"), None),
        ("UI Designer", "Design", ("Marketing",), ("Web", "Mobile"), None),
        ("Graphic Designer", "Design", ("Marketing",), ("Print", "Motion", "Branding"), None),
        ("UX Researcher", "Design", ("Product",), (), None),
        # Marketing
        ("Marketing Manager", "Marketing", ("Sales",), ("B2B", "DACH", "Nordics", "Events"), None),
        ("Content Marketing Manager", "Marketing", ("Design",), ("B2B", "Video"), None),
        ("SEO Specialist", "Marketing", ("Data",), ("Technical SEO", "Content"), None),
        ("Performance Marketing Manager", "Marketing", ("Data",),
         ("Paid Social", "SEA", "Google Ads"), None),
        ("Social Media Manager", "Marketing", ("Design",), ("TikTok", "Community"), None),
        ("Brand Manager", "Marketing", ("Sales",), ("FMCG", "Beauty"), None),
        # Sales
        ("Account Executive", "Sales", ("Customer Service",),
         ("SaaS", "Mid-Market", "Enterprise", "DACH", "Benelux"), None),
        ("Sales Development Representative", "Sales", ("Marketing",),
         ("French-speaking", "German-speaking", "Nordics"), None),
        ("Key Account Manager", "Sales", ("Customer Service",), ("Retail", "Pharma", "FMCG"), None),
        ("Sales Manager", "Sales", ("Marketing",), ("Field Sales", "Automotive"), None),
        ("Business Development Manager", "Sales", ("Marketing", "Finance"),
         ("Partnerships", "Energy", "Healthcare"), None),
        # Finance
        ("Financial Analyst", "Finance", ("Data",), ("FP&A", "M&A", "Treasury"), None),
        ("Accountant", "Finance", (), ("Accounts Payable", "IFRS", "HGB"), None),
        ("Controller", "Finance", (), ("Group Reporting", "Plant Controlling"), None),
        ("Tax Advisor", "Finance", ("Legal",), ("Transfer Pricing", "VAT"), None),
        ("Payroll Specialist", "Finance", ("Human Resources",), (), None),
        ("Auditor", "Finance", ("Legal",), ("IT Audit", "Financial Services"), None),
        # Healthcare
        ("Registered Nurse", "Healthcare", (),
         ("Night Shift", "Paediatrics", "Oncology", "Emergency Department"), None),
        ("Intensive Care Nurse", "Healthcare", (), (), None),
        ("Physiotherapist", "Healthcare", (), ("Sports", "Neurology"), None),
        ("Pharmacist", "Healthcare", ("Sales",), ("Hospital", "Community Pharmacy"), None),
        ("Medical Assistant", "Healthcare", ("Customer Service",), ("Dermatology", "GP Practice"), None),
        ("Care Worker", "Healthcare", (), ("Elderly Care", "Home Care"), None),
        ("General Practitioner", "Healthcare", (), (), "pro"),
        # Logistics
        ("Warehouse Operative", "Logistics", (), ("Forklift", "Night Shift"), None),
        ("Supply Chain Analyst", "Logistics", ("Data",), ("Demand Planning",), "pro"),
        ("Logistics Coordinator", "Logistics", ("Customer Service",), ("Import/Export",), None),
        ("Truck Driver", "Logistics", (), ("CE Licence", "Long Haul", "Regional"), None),
        ("Dispatcher", "Logistics", ("Customer Service",), ("Road Freight",), None),
        ("Procurement Specialist", "Logistics", ("Finance",), ("Indirect Spend", "Raw Materials"), "pro"),
        # Hospitality
        ("Chef de Partie", "Hospitality", (), ("Pastry", "Garde Manger"), None),
        ("Sous Chef", "Hospitality", (), (), None),
        ("Hotel Receptionist", "Hospitality", ("Customer Service",), ("Night Audit",), None),
        ("Restaurant Manager", "Hospitality", ("Sales",), (), None),
        ("Barista", "Hospitality", (), (), None),
        ("Housekeeping Supervisor", "Hospitality", (), (), None),
        ("Event Coordinator", "Hospitality", ("Marketing", "Sales"), ("Conferences", "Weddings"), None),
        # Education
        ("Primary School Teacher", "Education", (), ("English", "Mathematics"), None),
        ("Secondary School Teacher", "Education", (),
         ("Mathematics", "Physics", "English", "Chemistry", "History"), None),
        ("Teaching Assistant", "Education", (), ("Special Needs",), None),
        ("Language Teacher", "Education", (), ("German", "English", "French", "Spanish"), None),
        ("Early Years Educator", "Education", ("Healthcare",), (), None),
        ("Lecturer", "Education", ("Data", "Engineering"), ("Computer Science", "Economics"), "pro"),
        # Human Resources
        ("HR Business Partner", "Human Resources", (), ("Tech", "Operations"), None),
        ("Recruiter", "Human Resources", ("Sales",), ("Tech", "Healthcare", "Executive Search"), None),
        ("Talent Acquisition Specialist", "Human Resources", (), (), None),
        ("HR Generalist", "Human Resources", ("Finance",), (), None),
        # Customer Service
        ("Customer Support Agent", "Customer Service", (),
         ("German-speaking", "Dutch-speaking", "Italian-speaking"), None),
        ("Customer Success Manager", "Customer Service", ("Sales",), ("SaaS", "Enterprise"), None),
        ("Call Centre Agent", "Customer Service", ("Sales",), ("Inbound", "Outbound"), None),
        ("Technical Support Specialist", "Customer Service", ("Engineering",), ("2nd Level",), None),
        # Legal
        ("Legal Counsel", "Legal", ("Finance",), ("Commercial", "Employment Law", "IP"), None),
        ("Paralegal", "Legal", (), ("Corporate", "Litigation"), None),
        ("Compliance Officer", "Legal", ("Finance",), ("AML", "KYC"), None),
        ("Data Protection Officer", "Legal", ("Engineering",), ("GDPR",), None),
        # Construction
        ("Site Manager", "Construction", (), ("Residential", "Infrastructure"), None),
        ("Electrician", "Construction", (), ("Industrial", "Solar PV"), None),
        ("Civil Engineer", "Construction", ("Engineering",), ("Structural", "Bridges", "Water"), "pro"),
        ("Plumber", "Construction", (), ("Heat Pumps",), None),
        ("Architect", "Construction", ("Design",), ("Residential", "BIM"), "pro"),
        ("Project Engineer", "Construction", ("Engineering",), ("Renewables", "HVAC"), "pro"),
    ]
    return tuple(
        _Role(name, cat, related, specs, track or _CATEGORY_TRACK[cat])
        for name, cat, related, specs, track in raw
    )


_ROLES = _roles()

# Seniority prefixes; repetition encodes weights so a single rng.choice suffices.
_SENIORITY: dict[str, tuple[str, ...]] = {
    "tech": ("",) * 6 + ("Junior ",) * 3 + ("Senior ",) * 5
    + ("Lead ", "Staff ", "Principal ", "Mid-Level ", "Graduate "),
    "pro": ("",) * 6 + ("Junior ",) * 3 + ("Senior ",) * 4
    + ("Lead ", "Associate ", "Graduate ", "Mid-Level "),
    "skilled": ("",) * 8 + ("Senior ",) * 2
    + ("Trainee ", "Experienced ", "Part-Time ", "Full-Time "),
}

_STUDENT_RATE = 0.07

# --------------------------------------------------------------------------
# Description sentence pools
# Placeholders: {title}, {a_title} ("a"/"an" + title), {company}, {where}.
# --------------------------------------------------------------------------

_INTRO = (
    "{company} is looking for {a_title} to join the team {where}.",
    "We are hiring {a_title} {where} to help {company} grow.",
    "Join {company} as {a_title} {where} and make a real difference from day one.",
    "{company} is expanding and we are searching for {a_title} {where}.",
    "Are you {a_title} looking for your next step? {company} is hiring {where}.",
    "For our growing team {where}, {company} is looking for {a_title}.",
)

_ABOUT = (
    "Founded more than fifteen years ago, we have grown from a small team into a company with customers across Europe.",
    "We believe that good work starts with people who trust each other and enjoy what they do.",
    "Our teams combine decades of industry experience with a genuine curiosity for new ideas.",
    "{company} serves thousands of customers every day and is proud of its reliable service.",
    "We are a family-owned business that values long-term relationships over quick wins.",
    "Since our last funding round we have doubled our headcount and opened two new offices.",
    "Sustainability is at the heart of how we plan, build and operate.",
    "More than forty nationalities work together at {company}, and English is our common language.",
    "Our mission is simple: make everyday life a little easier for the people who rely on us.",
    "We work with hospitals, retailers, public institutions and start-ups alike.",
    "Flat hierarchies and short decision paths mean your ideas are heard quickly.",
    "We were recently recognised as one of the most attractive employers in our region.",
    "Our products are used in more than twenty countries, and we are only getting started.",
    "{company} invests a significant share of its revenue in training and development.",
    "We are profitable, independent and growing steadily year after year.",
    "Diversity and inclusion are not buzzwords for us; they shape how we hire and how we work.",
    "Customers choose {company} because we combine local presence with European reach.",
    "Our headquarters are close to public transport and surrounded by cafés and parks.",
    "We are part of an international group but keep the spirit of a start-up.",
    "Quality, openness and reliability are the values that guide our daily work.",
    "Over the last year our team delivered projects for some of the best-known brands in Europe.",
    "We like to keep things pragmatic: fewer meetings, more meaningful work.",
)

_ROLE = (
    "As {a_title} you will work closely with colleagues from different teams and take ownership of your own area.",
    "In this role you will report to the team lead and become part of a friendly, experienced team.",
    "You will have the freedom to shape processes and bring in your own ideas.",
    "The position of {title} is new, so you will have real influence on how the role develops.",
    "Your work will directly affect our customers and the quality of our service.",
    "We are looking for someone who enjoys responsibility and likes to see the results of their work.",
    "This is a permanent, full-time position with a thorough onboarding programme.",
    "You will start with a structured onboarding and a buddy who helps you settle in.",
    "The team currently consists of eight people with a wide mix of backgrounds and experience.",
    "We expect the role to grow with the company, with clear paths towards more responsibility.",
    "You will split your time between hands-on work and improving the way we work together.",
    "Most of your day will be spent solving practical problems together with your colleagues.",
    "As {title} you are a key contact for internal stakeholders and external partners.",
    "We offer a hybrid setup, although some tasks require regular presence on site.",
    "The role suits someone who is organised, reliable and calm when things get busy.",
    "You will be given the time and resources to do things properly rather than quickly.",
)

_RESP_GENERIC = (
    "- Work closely with colleagues across departments to deliver on shared goals",
    "- Document your work clearly so that others can build on it",
    "- Take part in regular team meetings and contribute ideas for improvement",
    "- Keep an eye on quality and raise issues early",
    "- Support the onboarding of new team members",
    "- Plan and prioritise your own tasks in a fast-moving environment",
    "- Maintain good relationships with internal and external partners",
    "- Report on progress and results to your team lead",
    "- Help to improve processes, tools and ways of working",
    "- Follow health, safety and data protection guidelines at all times",
    "- Represent {company} professionally towards customers and partners",
    "- Contribute to a positive and respectful team culture",
    "- Handle ad-hoc requests with care and good judgement",
    "- Share knowledge in internal workshops and informal sessions",
)

_RESP: dict[str, tuple[str, ...]] = {
    "Engineering": (
        "- Design, build and maintain reliable services and applications",
        "- Write clean, well-tested code and review the code of your peers",
        "- Improve performance, observability and scalability of our systems",
        "- Collaborate with product and design on new features from idea to release",
        "- Automate build, test and deployment pipelines",
        "- Investigate and fix production incidents together with the on-call team",
        "- Make pragmatic technical decisions and document the trade-offs",
    ),
    "Data": (
        "- Build and maintain data pipelines and well-documented data models",
        "- Analyse large datasets and turn the results into clear recommendations",
        "- Create dashboards and reports for management and operational teams",
        "- Develop, validate and monitor statistical and machine learning models",
        "- Ensure data quality through tests, alerts and clear ownership",
        "- Work with stakeholders to define metrics and answer business questions",
    ),
    "Product": (
        "- Own the product roadmap and prioritise the backlog based on impact",
        "- Talk to customers regularly to understand their needs and problems",
        "- Write clear user stories and acceptance criteria together with engineering",
        "- Define success metrics and measure the outcome of every release",
        "- Facilitate planning, refinement and retrospective sessions",
        "- Align stakeholders across sales, support and engineering",
    ),
    "Design": (
        "- Create user flows, wireframes, prototypes and polished visual designs",
        "- Conduct user interviews and usability tests and share the insights",
        "- Maintain and extend our design system",
        "- Work closely with developers to make sure designs are implemented well",
        "- Develop visual concepts for campaigns, print and digital channels",
        "- Present and defend design decisions to stakeholders",
    ),
    "Marketing": (
        "- Plan and execute campaigns across online and offline channels",
        "- Manage the marketing budget and track return on investment",
        "- Create engaging content for our website, newsletter and social media",
        "- Analyse campaign performance and optimise continuously",
        "- Coordinate with agencies, freelancers and internal teams",
        "- Organise trade fairs, webinars and customer events",
    ),
    "Sales": (
        "- Identify and qualify new business opportunities in your region",
        "- Manage the full sales cycle from first contact to signed contract",
        "- Build long-term relationships with key decision makers",
        "- Prepare offers, negotiate terms and close deals",
        "- Keep our CRM up to date and forecast your pipeline accurately",
        "- Work with marketing on campaigns and lead generation",
    ),
    "Finance": (
        "- Prepare monthly, quarterly and annual financial statements",
        "- Support budgeting, forecasting and variance analysis",
        "- Reconcile accounts and ensure accurate bookkeeping",
        "- Work with auditors and tax advisors on year-end closing",
        "- Improve financial processes and internal controls",
        "- Prepare reports and analyses for management",
    ),
    "Healthcare": (
        "- Provide safe, compassionate care to patients and their families",
        "- Assess patient needs and document care plans accurately",
        "- Administer medication and treatments according to guidelines",
        "- Work closely with doctors, therapists and the wider care team",
        "- Support patients with daily activities and mobility",
        "- Take part in shift handovers and interdisciplinary case meetings",
    ),
    "Logistics": (
        "- Plan and coordinate inbound and outbound shipments",
        "- Pick, pack and load goods accurately and on time",
        "- Monitor stock levels and carry out regular inventory checks",
        "- Communicate with carriers, suppliers and customers about deliveries",
        "- Optimise routes, capacities and warehouse processes",
        "- Handle customs documents and shipping paperwork",
    ),
    "Hospitality": (
        "- Welcome guests warmly and make sure they feel at home",
        "- Prepare dishes to a consistently high standard",
        "- Keep work areas clean and follow food hygiene rules",
        "- Handle reservations, check-ins, check-outs and guest requests",
        "- Coordinate with kitchen, service and housekeeping teams",
        "- Help to plan menus, events and seasonal offers",
    ),
    "Education": (
        "- Plan and deliver engaging lessons for pupils of different abilities",
        "- Assess progress and give constructive feedback to learners",
        "- Communicate regularly with parents and guardians",
        "- Create a safe, inclusive and motivating learning environment",
        "- Contribute to curriculum development and school projects",
        "- Support pupils with additional learning needs",
    ),
    "Human Resources": (
        "- Manage the full recruitment cycle from job posting to signed contract",
        "- Advise managers on employment law and people topics",
        "- Run onboarding and offboarding processes",
        "- Develop and run training and development programmes",
        "- Maintain employee records and HR systems",
        "- Support performance reviews and compensation rounds",
    ),
    "Customer Service": (
        "- Answer customer requests by phone, email and chat",
        "- Resolve problems quickly and escalate complex cases where needed",
        "- Help customers get the most value from our products",
        "- Record feedback and share recurring issues with the product team",
        "- Run onboarding calls and training sessions for new customers",
        "- Keep response times and customer satisfaction high",
    ),
    "Legal": (
        "- Draft, review and negotiate commercial contracts",
        "- Advise internal teams on legal and regulatory questions",
        "- Monitor changes in legislation and assess their impact",
        "- Maintain compliance policies and run internal trainings",
        "- Coordinate with external law firms and authorities",
        "- Handle data protection requests and assessments",
    ),
    "Construction": (
        "- Plan, supervise and document work on site",
        "- Install, maintain and repair technical systems",
        "- Ensure compliance with safety regulations and building codes",
        "- Coordinate subcontractors, suppliers and site schedules",
        "- Read technical drawings and prepare quantity estimates",
        "- Carry out inspections and acceptance tests",
    ),
}

_REQ_GENERIC = (
    "- Very good communication skills in English; other European languages are a plus",
    "- A structured, reliable and independent way of working",
    "- A positive attitude and a genuine interest in learning",
    "- The ability to stay focused and friendly under pressure",
    "- Strong teamwork and a hands-on mentality",
    "- Attention to detail and a sense of ownership",
    "- Good knowledge of common office software",
    "- Valid work permit for the European Union",
    "- Flexibility to adapt to changing priorities",
    "- Curiosity and the willingness to ask questions",
    "- An eye for improvement and pragmatic solutions",
    "- Empathy and respect for colleagues and customers",
)

_REQ: dict[str, tuple[str, ...]] = {
    "Engineering": (
        "- Several years of professional software development experience",
        "- Solid knowledge of at least one modern programming language",
        "- Experience with cloud platforms, containers and CI/CD",
        "- Good understanding of databases, APIs and distributed systems",
        "- Familiarity with testing practices and code reviews",
    ),
    "Data": (
        "- Strong SQL skills and experience with Python or R",
        "- A degree in statistics, computer science, mathematics or a related field",
        "- Experience with BI tools such as Power BI, Tableau or Looker",
        "- Understanding of data modelling and data warehousing concepts",
        "- The ability to explain complex findings in simple words",
    ),
    "Product": (
        "- Experience in product management or a related role",
        "- A strong analytical mindset and comfort with data",
        "- Experience working with agile methods such as Scrum or Kanban",
        "- Excellent stakeholder management skills",
    ),
    "Design": (
        "- A portfolio that shows your design process and results",
        "- Very good skills in Figma or comparable tools",
        "- Experience with user research and usability testing",
        "- A strong sense for typography, layout and colour",
    ),
    "Marketing": (
        "- Experience in online marketing, ideally in a digital company",
        "- Confident use of analytics tools and advertising platforms",
        "- Excellent writing skills and a feel for good content",
        "- Creativity combined with a data-driven mindset",
    ),
    "Sales": (
        "- Proven track record of meeting or exceeding sales targets",
        "- Strong negotiation and presentation skills",
        "- Experience with CRM systems such as Salesforce or HubSpot",
        "- Willingness to travel within your region",
    ),
    "Finance": (
        "- A degree in finance, accounting or business administration",
        "- Experience with IFRS or local GAAP",
        "- Very good Excel skills and experience with ERP systems such as SAP",
        "- A precise and trustworthy way of working with numbers",
    ),
    "Healthcare": (
        "- A recognised qualification in nursing, therapy or a related field",
        "- Registration with the relevant professional body",
        "- Willingness to work in shifts, including weekends",
        "- Empathy, patience and a calm manner with patients",
    ),
    "Logistics": (
        "- Experience in logistics, transport or warehousing",
        "- A forklift licence or driving licence is an advantage",
        "- Good knowledge of warehouse management systems",
        "- Willingness to work in shifts",
    ),
    "Hospitality": (
        "- Experience in a hotel, restaurant or catering business",
        "- A completed apprenticeship in hospitality or cooking is an advantage",
        "- A friendly and confident appearance",
        "- Willingness to work evenings, weekends and public holidays",
    ),
    "Education": (
        "- A teaching qualification or relevant degree",
        "- Experience working with children or young people",
        "- Patience, creativity and strong classroom management skills",
        "- A clear criminal record check",
    ),
    "Human Resources": (
        "- Several years of experience in HR or recruiting",
        "- Good knowledge of local employment law",
        "- Experience with HR software and applicant tracking systems",
        "- Discretion and a high level of integrity",
    ),
    "Customer Service": (
        "- Experience in customer support, call centres or sales",
        "- Fluent English and ideally a second European language",
        "- Patience and a solution-oriented mindset",
        "- Good typing skills and confidence with ticketing systems",
    ),
    "Legal": (
        "- A law degree and admission to the bar where applicable",
        "- Experience in a law firm or in-house legal department",
        "- Very good knowledge of contract and data protection law",
        "- Precise drafting skills in English",
    ),
    "Construction": (
        "- A completed apprenticeship or degree in a relevant technical field",
        "- Experience on construction sites or in technical installation",
        "- The ability to read technical drawings",
        "- A driving licence and willingness to travel to different sites",
    ),
}

_BENEFITS = (
    "- A competitive salary with an annual review",
    "- Thirty days of paid holiday plus public holidays",
    "- Flexible working hours and the option to work from home",
    "- A personal training budget for courses, books and conferences",
    "- A subsidised public transport ticket or bike leasing",
    "- Company pension scheme with employer contribution",
    "- Modern equipment of your choice",
    "- Regular team events, a summer party and a winter celebration",
    "- Fresh fruit, coffee and drinks in the office",
    "- Support with relocation and visa applications",
    "- Private health insurance and a gym membership discount",
    "- Parental leave that goes beyond the legal minimum",
    "- Clear career paths and regular feedback conversations",
    "- Employee discounts on our products and services",
    "- A permanent contract in a financially stable company",
    "- Sabbatical options after three years with the company",
    "- Mental health support through an external counselling service",
    "- Language classes to help you settle in {where}",
)

_APPLY = (
    "Interested? Send us your CV and a short note about why you would like to join {company}.",
    "Please apply through our online form; a cover letter is optional.",
    "We look forward to receiving your application, including your earliest start date and salary expectations.",
    "Apply now and become part of {company}.",
    "Questions about the role? Our recruiting team is happy to help.",
    "We review applications on a rolling basis, so do not wait too long.",
    "The interview process consists of a short call, a practical task and a meeting with the team.",
    "We welcome applications from all backgrounds, regardless of age, gender, origin, religion or disability.",
    "Send your application with the reference {title} and we will get back to you within two weeks.",
    "Not sure if you tick every box? Apply anyway; we value potential as much as experience.",
)

_APPLY_DE = (
    "Wir freuen uns auf deine Bewerbung!",
    "Bewirb dich jetzt – wir freuen uns darauf, dich kennenzulernen.",
    "Deutschkenntnisse sind von Vorteil, aber keine Voraussetzung.",
)
_APPLY_FR = (
    "Nous avons hâte de recevoir votre candidature !",
    "Le poste est ouvert à toutes et à tous, n'hésitez pas à postuler.",
    "La maîtrise du français est un atout.",
)

_HEAD_ABOUT = ("About us", "About {company}", "Who we are")
_HEAD_ROLE = ("The role", "Your role", "About the position")
_HEAD_RESP = ("What you will do:", "Your responsibilities:", "Your tasks:")
_HEAD_REQ = ("What you bring:", "Your profile:", "Requirements:")
_HEAD_BEN = ("What we offer:", "Benefits:", "Why {company}?")
_HEAD_APPLY = ("How to apply", "Next steps", "Interested?")

# A template is (text, base word count, placeholder counts, needs formatting).
_Template = tuple[str, int, tuple[int, int, int, int], bool]
_PLACEHOLDERS = ("{title}", "{a_title}", "{company}", "{where}")


def _compile(texts: tuple[str, ...]) -> tuple[_Template, ...]:
    out: list[_Template] = []
    for text in texts:
        # Each placeholder is one whitespace-separated token in the template, so
        # a value of k words adds k - 1 words per occurrence (see _Renderer).
        t, a, c, w = (text.count(p) for p in _PLACEHOLDERS)
        out.append((text, len(text.split()), (t, a, c, w), bool(t or a or c or w)))
    return tuple(out)


_P_INTRO = _compile(_INTRO)
_P_ABOUT = _compile(_ABOUT)
_P_ROLE = _compile(_ROLE)
_P_RESP = {cat: _compile(_RESP[cat]) + _compile(_RESP_GENERIC) for cat in _RESP}
_P_REQ = {cat: _compile(_REQ[cat]) + _compile(_REQ_GENERIC) for cat in _REQ}
_N_RESP_SPECIFIC = {cat: len(_RESP[cat]) for cat in _RESP}
_N_REQ_SPECIFIC = {cat: len(_REQ[cat]) for cat in _REQ}
_P_BEN = _compile(_BENEFITS)
_P_APPLY = _compile(_APPLY)
_P_APPLY_DE = _compile(_APPLY_DE)
_P_APPLY_FR = _compile(_APPLY_FR)
_P_HEADS = tuple(
    _compile(h) for h in (_HEAD_ABOUT, _HEAD_ROLE, _HEAD_RESP, _HEAD_REQ, _HEAD_BEN, _HEAD_APPLY)
)

# Cumulative share of the target word count reached after each section.
_CUM_SHARE = (0.17, 0.32, 0.57, 0.80, 0.93, 1.0)
_HEADINGS_FROM = 140  # descriptions with fewer target words have no headings
_BULLET_SECTIONS = frozenset({2, 3, 4})

_COPRIME_STEPS: dict[int, tuple[int, ...]] = {}


def _steps(n: int) -> tuple[int, ...]:
    steps = _COPRIME_STEPS.get(n)
    if steps is None:
        steps = tuple(s for s in range(1, n) if gcd(s, n) == 1) or (1,)
        _COPRIME_STEPS[n] = steps
    return steps


def _order(rng: random.Random, n: int) -> tuple[int, int]:
    """Return (start, step) describing a cheap pseudo-permutation of range(n)."""
    return rng.randrange(n), rng.choice(_steps(n))


class _Renderer:
    """Formats templates for one job and tracks exact word counts."""

    __slots__ = ("values", "extra")

    def __init__(self, title: str, a_title: str, company: str, where: str) -> None:
        self.values = {"title": title, "a_title": a_title, "company": company, "where": where}
        self.extra = (
            len(title.split()) - 1,
            len(a_title.split()) - 1,
            len(company.split()) - 1,
            len(where.split()) - 1,
        )

    def render(self, tpl: _Template) -> tuple[str, int]:
        text, base, counts, needs = tpl
        if not needs:
            return text, base
        e = self.extra
        words = base + counts[0] * e[0] + counts[1] * e[1] + counts[2] * e[2] + counts[3] * e[3]
        return text.format_map(self.values), words


def _description(
    rng: random.Random,
    role: _Role,
    country: str,
    title: str,
    company: str,
    where: str,
) -> str:
    """Build one description with MIN_WORDS..MAX_WORDS words (str.split())."""
    target = rng.randint(MIN_WORDS, MAX_WORDS)
    a_title = ("an " if title[0] in "AEIOU" else "a ") + title
    r = _Renderer(title, a_title, company, where)
    cat = role.category

    # Candidate pools per section: (pool, number of leading "specific" items).
    pools: tuple[tuple[tuple[_Template, ...], int], ...] = (
        (_P_ABOUT, 0),
        (_P_ROLE, 0),
        (_P_RESP[cat], _N_RESP_SPECIFIC[cat]),
        (_P_REQ[cat], _N_REQ_SPECIFIC[cat]),
        (_P_BEN, 0),
        (_P_APPLY, 0),
    )
    with_heads = target >= _HEADINGS_FROM
    sections: list[list[tuple[str, int]]] = []
    total = 0
    for idx, (pool, n_specific) in enumerate(pools):
        items: list[tuple[str, int]] = []
        if with_heads:
            items.append(r.render(rng.choice(_P_HEADS[idx])))
            total += items[-1][1]
        if idx == 0:
            items.append(r.render(rng.choice(_P_INTRO)))
            total += items[-1][1]
        budget = target * _CUM_SHARE[idx]
        # Specific items first (in a random order), then generic ones.
        if n_specific:
            groups = ((0, n_specific), (n_specific, len(pool) - n_specific))
        else:
            groups = ((0, len(pool)),)
        full = total >= budget
        for offset, n in groups:
            if full:
                break
            start, step = _order(rng, n)
            for i in range(n):
                text, words = r.render(pool[offset + (start + i * step) % n])
                # Stop at the sentence boundary nearest to the budget.
                if total + words * 0.5 > budget:
                    full = True
                    break
                items.append((text, words))
                total += words
        if idx == 5:
            if len(items) == int(with_heads):  # always say how to apply
                text, words = r.render(rng.choice(_P_APPLY))
                items.append((text, words))
                total += words
            local = _P_APPLY_DE if country in _GERMAN else _P_APPLY_FR if country in _FRENCH else ()
            if local and rng.random() < 0.35:
                text, words = r.render(rng.choice(local))
                if total + words <= MAX_WORDS:
                    items.append((text, words))
                    total += words
        if with_heads and len(items) == 1:  # no room for a body: drop the heading
            total -= items.pop()[1]
        sections.append(items)

    # Trim overshoot: drop trailing sentences from the fullest removable sections.
    min_len = [2 if with_heads else 1] * 6
    while total > MAX_WORDS:
        best = max(range(6), key=lambda k: len(sections[k]) - min_len[k])
        if len(sections[best]) <= min_len[best]:
            break
        total -= sections[best].pop()[1]
    # Top up very short texts (rare; pools are large enough in practice).
    if total < MIN_WORDS:
        start, step = _order(rng, len(_P_ROLE))
        for i in range(len(_P_ROLE)):
            text, words = r.render(_P_ROLE[(start + i * step) % len(_P_ROLE)])
            sections[1].append((text, words))
            total += words
            if total >= MIN_WORDS:
                break

    paragraphs: list[str] = []
    for idx, items in enumerate(sections):
        body_items = items[1:] if with_heads else items
        if not body_items:
            continue
        sep = "\n" if idx in _BULLET_SECTIONS else " "
        body = sep.join(t for t, _ in body_items)
        paragraphs.append(f"{items[0][0]}\n{body}" if with_heads else body)
    return "\n\n".join(paragraphs)


def _title(rng: random.Random, role: _Role, country: str) -> str:
    """Compose a title from seniority, role and specialisation."""
    if role.track != "skilled" and rng.random() < _STUDENT_RATE:
        area = _CATEGORY_AREA[role.category]
        if country in _GERMAN:
            return rng.choice(("Werkstudent ", "Werkstudent (m/w/d) ", "Praktikum ")) + area
        if country in _FRENCH:
            return rng.choice(("Stagiaire ", "Alternance ")) + area
        return rng.choice((f"Intern {area}", f"Working Student {area}", f"{area} Internship"))
    title = rng.choice(_SENIORITY[role.track]) + role.name
    if role.specs and rng.random() < 0.45:
        title += f" ({rng.choice(role.specs)})"
    if country in ("Germany", "Austria") and rng.random() < 0.25:
        title += " (m/w/d)"
    elif country == "France" and rng.random() < 0.2:
        title += " (H/F)"
    return title


def _company(rng: random.Random, role: _Role, country: str) -> str:
    """Invent a company name, with a legal form matching the country."""
    stem = rng.choice(_COMPANY_STEMS)
    form = rng.choice(_LEGAL_FORMS[country])
    r = rng.random()
    if r < 0.7:
        sector = rng.choice(_CATEGORY_SECTORS[role.category])
    elif r < 0.88:
        sector = rng.choice(_GENERIC_SECTORS)
    elif r < 0.96:
        return f"{stem} & {rng.choice(_COMPANY_STEMS)} {form}"
    else:
        return f"{stem} {form}"
    return f"{stem} {sector} {form}"


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return DEFAULT_NOW
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def generate_jobs(
    count: int, *, seed: int = 0, now: datetime | None = None
) -> Iterator[DemoJob]:
    """Yield ``count`` invented job postings, deterministically for ``seed`` and ``now``.

    ``now`` is the reference date; ``created_at`` values are timezone-aware UTC
    datetimes in ``[now - 180 days, now]``. A naive ``now`` is taken as UTC;
    ``None`` means :data:`DEFAULT_NOW` (2026-11-01T00:00:00Z). About 1% of the
    yielded jobs are exact copies (equal in every field) of an earlier job, about
    1% have an empty description and about 1% have ``None``; all other
    descriptions have between 50 and 600 words (counted with ``str.split()``).

    Raises ``ValueError`` if ``count`` is negative. Validation happens on the
    call itself, not on first iteration.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return _generate(count, seed, _utc(now))


def _generate(count: int, seed: int, now: datetime) -> Iterator[DemoJob]:
    rng = random.Random(seed)
    history: list[DemoJob] = []
    spread = SPREAD_DAYS * 86400
    for _ in range(count):
        roll = rng.random()
        if roll < _DUPLICATE_RATE and history:
            original = rng.choice(history)
            yield replace(original, categories=list(original.categories))
            continue

        role = rng.choice(_ROLES)
        if rng.random() < _REMOTE_RATE:
            location, country, where = REMOTE_LOCATION, "", "remotely from anywhere in the EU"
        else:
            city, country = rng.choice(_CITIES)
            location, where = f"{city}, {country}", f"in {city}"

        title = _title(rng, role, country)
        company = _company(rng, role, country)

        categories = [role.category]
        if role.related:
            extra = rng.random()
            n_extra = 0 if extra < 0.55 else 1 if extra < 0.9 else 2
            if n_extra:
                categories += rng.sample(role.related, min(n_extra, len(role.related)))

        description: str | None
        if roll < _DUPLICATE_RATE + _EMPTY_RATE:
            description = ""
        elif roll < _DUPLICATE_RATE + _EMPTY_RATE + _NONE_RATE:
            description = None
        else:
            description = _description(rng, role, country, title, company, where)

        created_at = now - timedelta(seconds=rng.randrange(spread + 1))
        job = DemoJob(
            title=title,
            company=company,
            location=location,
            categories=categories,
            description=description,
            is_active=rng.random() < _ACTIVE_RATE,
            created_at=created_at,
        )
        if len(history) < _HISTORY_SIZE:
            history.append(job)
        else:
            history[rng.randrange(_HISTORY_SIZE)] = job
        yield job
