#!/usr/bin/env python3
"""Writes stores.csv, the demo's ERP export, byte for byte.

The file is a fixture and is committed; this script only documents how its
bytes were made and rebuilds it after an edit: python3 make_stores_csv.py.
It is windows-1252 (0xE4 0xF6 0xFC 0xDF for a o u with umlaut and sharp s,
0x80 for the euro sign), ';'-separated, CRLF line ends, German dates
dd.mm.yyyy and amounts 1.234,56. Six rows are bad on purpose, each for one
reason (marked BAD below); the other 19 are published.
"""
import os

HEADER = "Filiale;Name;Eroeffnung;Umsatz;Waehrung;E-Mail;Telefon;Status;Region;Strasse;PLZ;Ort"

ROWS = [
    "1001;Filiale Berlin Mitte;15.03.1998;1.234.567,89;EUR;berlin-mitte@stores.example.de;030 1234567;open;Ost;Friedrichstraße 101;10117;Berlin",
    "1002;Filiale Hamburg Altona;01.09.2001;987.654,32;€;Hamburg.Altona@Stores.Example.DE;040 3891234;open;Nord;Große Bergstraße 160;22767;Hamburg",
    "1003;Filiale München Schwabing;12.05.2005;2.345.678,00;EUR;muenchen@stores.example.de;+49 89 3307788;OPEN;Süd;Leopoldstraße 82;80802;München",
    # empty status: default('open')
    "1004;Filiale Köln Ehrenfeld;30.11.2010;456.789,10;eur;koeln@stores.example.de;(0221) 5461230;;West;Venloer Straße 389;50825;Köln",
    "1005;Filiale Frankfurt Zeil;03.04.1995;3.210.987,65;EUR;frankfurt@stores.example.de;069 13377880;open;Mitte;Zeil 106;60313;Frankfurt am Main",
    "1006;Filiale Stuttgart Königstraße;22.08.2003;1.111.111,11;€;stuttgart@stores.example.de;0711/2262710;closed;Süd;Königstraße 27;70173;Stuttgart",
    "1007;Filiale Düsseldorf Kö;07.07.2007;876.543,21;EUR;duesseldorf@stores.example.de;0211 86693100;Closed;West;Königsallee 60;40212;Düsseldorf",
    "1008;Filiale Leipzig Höfe;18.10.2012;345.678,90;EUR;leipzig@stores.example.de;0341 9612345;open;Ost;Grimmaische Straße 2;04109;Leipzig",
    # padded name: trim
    "1009;  Filiale Dresden Neustadt  ;01.02.2015;234.567,00;EUR;dresden@stores.example.de;0351 8104455;open;Ost;Hauptstraße 17;01097;Dresden",
    "1010;Filiale Nürnberg Lorenz;14.06.1999;654.321,00;EUR;nuernberg@stores.example.de;0911 2355660;open;Süd;Königstraße 2;90402;Nürnberg",
    # a quoted name holding the delimiter
    '1011;"Müller & Söhne; Filiale Bremen";09.09.2009;123.456,78;€;bremen@stores.example.de;0421 3378990;open;Nord;Obernstraße 2;28195;Bremen',
    "1012;Filiale Hannover Kröpcke;27.12.2000;567.890,12;EUR;hannover@stores.example.de;0511 3003450;open;Nord;Georgstraße 1;30159;Hannover",
    # BAD: impossible date
    "1013;Filiale Essen Rüttenscheid;31.02.2020;98.765,43;EUR;essen@stores.example.de;0201 7799880;open;West;Rüttenscheider Straße 58;45130;Essen",
    # BAD: required name missing
    "1014;;05.05.2005;76.543,21;EUR;bochum@stores.example.de;0234 9601230;open;West;Kortumstraße 12;44787;Bochum",
    # BAD: not an e-mail address
    "1015;Filiale Dortmund Westenhellweg;11.11.2011;432.109,87;EUR;dortmund(at)stores.example.de;0231 5567890;open;West;Westenhellweg 45;44137;Dortmund",
    "1016;Filiale Münster Prinzipalmarkt;20.03.2017;210.987,65;€;muenster@stores.example.de;0251 4140070;open;West;Prinzipalmarkt 3;48143;Münster",
    # BAD: store number 1003 again (duplicates: reject the later row)
    "1003;Filiale München Pasing;02.10.2018;321.098,76;EUR;pasing@stores.example.de;089 8299660;open;Süd;Landsberger Straße 529;81241;München",
    # BAD: status not one of open, closed
    "1018;Filiale Freiburg Altstadt;08.08.2008;187.654,32;EUR;freiburg@stores.example.de;0761 2171230;Renovierung;Süd;Kaiser-Joseph-Straße 193;79098;Freiburg im Breisgau",
    # BAD: amount that is no German number
    "1019;Filiale Augsburg Annastraße;16.09.2016;12,3,4;EUR;augsburg@stores.example.de;0821 3194500;open;Süd;Annastraße 16;86150;Augsburg",
    # no phone, no e-mail: both optional
    "1020;Filiale Würzburg Dom;01.07.2019;99.000,00;EUR;;;open;Süd;Domstraße 9;97070;Würzburg",
    "1021;Filiale Erfurt Anger;13.04.2014;143.210,00;EUR;erfurt@stores.example.de;0361 5623400;closed;Mitte;Anger 1;99084;Erfurt",
    # no opening date: optional
    "1022;Filiale Kiel Holstenstraße;;265.432,10;€;kiel@stores.example.de;+49 431 9828800;open;Nord;Holstenstraße 50;24103;Kiel",
    "1023;Filiale Regensburg Neupfarrplatz;24.06.2013;188.800,50;EUR;regensburg@stores.example.de;0941 5698770;open;Süd;Neupfarrplatz 5;93047;Regensburg",
    "1024;Filiale Göttingen Weender;30.01.2006;0,50;EUR;goettingen@stores.example.de;0551 4885500;open;Mitte;Weender Straße 75;37073;Göttingen",
    "1025;Filiale Potsdam Brandenburger;19.05.2021;77.777,77;EUR;potsdam@stores.example.de;0331 2708800;open;Ost;Brandenburger Straße 36;14467;Potsdam",
]

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "stores.csv"), "wb") as f:
    for line in [HEADER] + ROWS:
        f.write(line.encode("cp1252") + b"\r\n")
